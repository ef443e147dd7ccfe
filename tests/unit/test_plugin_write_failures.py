"""Rank 0's side of a Lima2 / Mosca write the writer ranks could not read: the batch's result names
the channel (writers/share_reads.py), RowWrites gives it up without counting its rows, and
PluginStreams turns it into a warning. (The writer ranks' side: tests/mpi; the whole path on the
real stack: tests/test_plugin_failures.py.)"""
from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

from nxpar.driver.plugin_streams import PluginStreams
from nxpar.driver.row_writes import RowWrites, StreamProgress
from nxpar.protocol import steps as st
from nxpar.protocol.options import Tuning

MOSCA, COUNTER = "fx:spectrum:spec_det00", "timer:elapsed_time"


def spec(path: str) -> st.ArraySpec:
    return st.ArraySpec(path=path, dtype="uint32", detector_shape=(4,), chunks=(2, 4), compression="none",
                        fillvalue=0)


class Writers:
    """Futures the test completes: each batch's StepResult, with the channels not written as value."""

    def __init__(self) -> None:
        self.batches: list[tuple[st.WriteBatch, Future]] = []

    def submit(self, batch: st.WriteBatch) -> Future:
        future: Future = Future()
        self.batches.append((batch, future))
        return future

    def answer(self, index: int, not_written: dict[str, str]) -> None:
        self.batches[index][1].set_result(st.StepResult(True, value=not_written))


def test_a_channel_the_writers_could_not_read_is_given_up_and_its_rows_not_counted():
    writers, failures = Writers(), []
    rows = RowWrites("scan", writers.submit, 2, Tuning(min_step_bytes_per_writer=0),
                     on_failed=lambda *args: failures.append(args))
    streams = [StreamProgress(MOSCA, "mosca_server", available=4), StreamProgress(COUNTER, "array", available=4)]
    submit = (lambda: rows.submit_due(streams, lambda p: spec(p.name), lambda p, stop: st.StreamSource("", "", p.name)))
    assert submit() and len(writers.batches) == 1
    for p in streams:
        p.available = 6
    assert submit() and len(writers.batches) == 2  # two batches in flight: both write both streams
    writers.answer(0, {MOSCA: "DevFailed: server restarting"})
    writers.answer(1, {MOSCA: "DevFailed: server restarting"})
    rows.wait_all()
    mosca, counter = streams
    assert (mosca.written, mosca.given_up, mosca.done) == (0, True, True)
    assert (counter.written, counter.given_up, counter.done) == (6, False, False)
    # once, for the first rows lost
    assert failures == [(MOSCA, 0, 4, st.ChannelFailure(st.FailureKind.UNREADABLE, "DevFailed: server restarting"))]
    assert rows.bytes_written == 6 * 16
    mosca.available = counter.available = 8
    assert submit() == [counter]  # no more writes of the given-up channel


def test_rows_written_before_the_failure_stay_counted_and_a_later_success_does_not_fill_the_hole():
    writers = Writers()
    rows = RowWrites("scan", writers.submit, 1, Tuning(min_step_bytes_per_writer=0))
    mosca = StreamProgress(MOSCA, "mosca_server", available=2)
    submit = (lambda: rows.submit_due([mosca], lambda p: spec(p.name), lambda p, stop: st.StreamSource("", "", p.name)))
    for available, answer in ((2, {}), (4, {MOSCA: "OSError: truncated file"}), (6, {})):
        mosca.available = available
        submit()
        writers.answer(len(writers.batches) - 1, answer)
    rows.wait_all()
    assert mosca.written == 2 and mosca.given_up


def test_the_warning_names_the_channel_and_the_reason():
    warnings: list[str] = []
    plugins = PluginStreams(SimpleNamespace(info={"name": "7_ascan"}), None, warnings.append)
    plugins.write_failed(MOSCA, 3, 6, "DevFailed: API_DeviceNotExported")
    assert warnings == [f"{MOSCA}: points 3..5 could not be read by the writers (DevFailed: API_DeviceNotExported): "
                        "points from 3 on not written"]
    assert plugins.warning == warnings[0]
