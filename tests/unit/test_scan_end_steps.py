"""What decides how soon a scan's file is done after the scan ends (docs/reference_comparison.md,
"Where the time goes"): a stream's first rows go at once (its dataset and links made during the
scan), the links of the streams first written travel in one step not waited for, the end of the
scan is timed from BLISS's end_time, and waiting ranks poll fast at first, slowly when idle."""
from __future__ import annotations

from concurrent.futures import Future

import pytest

from nxpar.driver.row_writes import RowWrites, StreamProgress
from nxpar.driver.scan_log import after_end_text
from nxpar.driver.writer_channel import StepError
from nxpar.nexus.file_plan import StreamKind
from nxpar.protocol import steps as st
from nxpar.protocol.mpi_roles import POLL_MAX_S, POLL_MIN_S, next_sleep
from nxpar.protocol.options import Tuning

SPEC = st.ArraySpec(path="/1.1/measurement/diode", dtype="float64", detector_shape=(), chunks=(1024,),
                    compression="", fillvalue=0.0)


class Steps:
    """The writer channel's submit(): records the steps, answers them when told."""

    def __init__(self) -> None:
        self.sent: list[tuple[object, Future]] = []

    def submit(self, step) -> Future:
        future: Future = Future()
        self.sent.append((step, future))
        return future

    def answer_all(self, ok: bool = True) -> None:
        for _, future in self.sent:
            if not future.done():
                future.set_result(st.StepResult(ok, value={}, error="" if ok else "no space left"))


def rows_of(steps: Steps, tuning: Tuning | None = None) -> RowWrites:
    return RowWrites("scan", steps.submit, 2, tuning or Tuning(), None)


def stream(name: str, available: int, submitted: int = 0) -> StreamProgress:
    return StreamProgress(name, StreamKind.ARRAY, spec=SPEC, available=available, submitted=submitted)


def source(p: StreamProgress, stop: int) -> st.RowsSource:
    return st.StreamSource("redis://", "scan", p.name)


def test_a_streams_first_rows_go_at_once_later_ones_wait_for_bytes_or_time():
    steps = Steps()
    rows = rows_of(steps, Tuning(max_delay_s=60.0))
    first, later = stream("a", available=2), stream("b", available=5, submitted=3)
    written = rows.submit_due([first, later], lambda p: SPEC, source)
    assert written == [first] and first.submitted == 2 and later.submitted == 3  # 16 bytes < min bytes
    batch = steps.sent[0][0]
    assert isinstance(batch, st.WriteBatch) and [(w.start, w.stop) for w in batch.writes] == [(0, 2)]


def test_a_following_step_is_not_waited_for_and_its_failure_ends_the_rows():
    steps = Steps()
    rows = rows_of(steps)
    rows.submit_due([stream("a", available=2)], lambda p: SPEC, source)
    rows.submit_following(st.Tree("scan", []))
    assert len(steps.sent) == 2 and not steps.sent[1][1].done()
    steps.sent[0][1].set_result(st.StepResult(True, value={}))
    steps.sent[1][1].set_result(st.StepResult(False, error="no space left"))
    with pytest.raises(StepError, match="no space left"):
        rows.wait_all()
    rows.wait_all(ignore_errors=True)  # nothing left: returns


def test_the_phases_are_told_from_the_scans_end_time():
    timeline = {"prepared": 100.0, "STOPPED": 110.001, "data written": 110.02, "file closed": 110.05}
    assert after_end_text(timeline, 110.0) == "STOPPED +0.001s, data written +0.020s, file closed +0.050s"
    assert after_end_text(timeline, None) == ""


def test_waiting_ranks_poll_fast_for_the_first_milliseconds_then_slowly():
    sleeps, sleep_s = [], POLL_MIN_S
    while sum(sleeps) < 0.2:
        sleeps.append(sleep_s)
        sleep_s = next_sleep(sleep_s)
    waited = 0.0
    for s in sleeps:
        if waited < 0.008:
            assert s < 0.0005  # the steps at a scan's end come within a few ms of each other
        waited += s
    assert sleeps[-1] == POLL_MAX_S  # an idle rank: ~500 probes/s
