"""Rank 0's cut of big-frame streams into steps (driver/row_writes.py): steps of whole units of chunk
rows (one per writer rank), partial chunks of big chunk rows only when they cannot be avoided."""
from __future__ import annotations

from concurrent.futures import Future

from nxpar.driver import row_writes
from nxpar.driver.row_writes import RowWrites, StreamProgress, rows_due
from nxpar.protocol import steps as st
from nxpar.protocol.options import Tuning

MB = 1 << 20
FRAME = st.ArraySpec(path="/f", dtype="uint16", detector_shape=(512, 512), chunks=(32, 128, 128),
                     compression="gzip-byteshuffle", fillvalue=0)  # a chunk row: 16 MiB in 16 tiles


def test_a_cut_by_the_budget_takes_whole_units_the_nearest_to_the_budget():
    row = 512 * 1024  # 32 rows: 16 MiB
    # 4 writer ranks, a budget a few scalar rows short of 4 chunk rows: 4 chunk rows, not 3
    assert rows_due(0, 240, 32, row, 64 * MB - 7680, flush_all=False, unit_chunks=4) == 128
    assert rows_due(5, 240, 32, row, 64 * MB, flush_all=False, unit_chunks=4) == 128  # from a partial chunk on
    # a budget under one unit: whole chunk rows, at least one
    assert rows_due(0, 240, 32, row, 16 * MB, flush_all=False, unit_chunks=4) == 32
    # the rows pending cut to whole units while the stream waits for its max delay
    assert rows_due(0, 100, 32, row, 64 * MB, flush_all=False, unit_chunks=4, whole_units=True) == 0
    assert rows_due(0, 100, 32, row, 64 * MB, flush_all=False, unit_chunks=2, whole_units=True) == 64
    assert rows_due(0, 100, 32, row, 64 * MB, flush_all=False, unit_chunks=4) == 96
    # sealed: a last piece under half a step goes with the step
    assert rows_due(128, 240, 32, row, 64 * MB, flush_all=True, unit_chunks=4) == 240
    assert rows_due(0, 240, 32, row, 64 * MB, flush_all=True, unit_chunks=4) == 128  # 3.5 rows left: a step


class Writers:
    def __init__(self) -> None:
        self.batches: list[st.WriteBatch] = []

    def submit(self, batch: st.WriteBatch) -> Future:
        self.batches.append(batch)
        return Future()


def frames(available: int, written_at: float) -> StreamProgress:
    return StreamProgress("cam:image", "array", spec=FRAME, available=available, last_write=written_at)


def test_big_frames_wait_for_whole_chunk_rows_and_units(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(row_writes.time, "monotonic", lambda: now[0])
    writers = Writers()
    rows = RowWrites("scan", writers.submit, 4, Tuning())
    p = frames(20, written_at=100.0)
    assert not rows.submit_due([p], lambda p: FRAME, lambda p, stop: None)  # first rows: no whole chunk row
    p.available = 70
    assert not rows.submit_due([p], lambda p: FRAME, lambda p, stop: None)  # 2 chunk rows: under a unit
    now[0] = 100.6  # the max delay passed: the whole chunk rows go, the partial one still waits
    assert rows.submit_due([p], lambda p: FRAME, lambda p, stop: None)
    assert (writers.batches[-1].writes[0].start, writers.batches[-1].writes[0].stop) == (0, 64)
    p.available = 80
    now[0] = 101.5  # a step in flight: a partial chunk row of big frames waits (10 × the max delay)
    assert not rows.submit_due([p], lambda p: FRAME, lambda p, stop: None)
    p.sealed = True  # sealed: the rest goes
    assert rows.submit_due([p], lambda p: FRAME, lambda p, stop: None)
    assert (writers.batches[-1].writes[0].start, writers.batches[-1].writes[0].stop) == (64, 80)
