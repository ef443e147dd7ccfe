"""The scan driver (driver/scan_driver.py) without servers: the real WriterChannel in one process,
fakes only for the writer ranks behind it and for blissdata/Redis (fakes.py)."""
from __future__ import annotations

import pytest

from launch.simulate import ScanSpec, scan_info
from nxpar.driver.journal import Journal
from nxpar.driver.scan_driver import ScanDriver
from nxpar.driver.states import REASON_DONE, State
from nxpar.protocol import steps as st
from nxpar.protocol.options import SaveOptions, Tuning
from tests.unit.fakes import FakeSource, RecordingExecutor, one_process_channel, rows_written, shapes_of, wait_until

FAST = Tuning(flush_period_s=0.01, poll_period_s=0.002, max_delay_s=0.05, disk_check_period_s=0.05)


@pytest.fixture
def scan(tmp_path):
    """A scan of a motor, timer, diode, MCA and 8x8 frames, to be written under tmp_path."""
    info = scan_info(ScanSpec("s", str(tmp_path / "data.h5"), 3, 10, image_shape=(8, 8), mca_channels=16))
    return FakeSource(info, shapes_of(info))


def start_writer(source, tmp_path, options=None, executor=None):
    channel, executor = one_process_channel(executor)
    journal = Journal("s", "unit", root=tmp_path / "state")
    writer = ScanDriver(source, "redis://fake", options or SaveOptions(), channel, FAST, "2.4.5", journal)
    writer.start()
    return writer, executor, journal


def finish(writer) -> None:
    writer.join(20)
    assert not writer.is_alive()


def final_status(executor) -> str:
    """writer/status of the last Tree step that set it."""
    values = [n.value for t in executor.of(st.Tree) for n in t.nodes if n.path.endswith("/writer/status")]
    return values[-1]


def test_a_scan_is_opened_streamed_finalised_and_closed_in_that_order(scan, tmp_path):
    writer, executor, journal = start_writer(scan, tmp_path)
    wait_until(lambda: executor.of(st.Tree))  # the skeleton follows the journal entry
    assert journal.path.exists() and scan.key in journal.path.read_text()  # journalled while open
    scan.publish(4)
    wait_until(lambda: executor.of(st.WriteBatch))
    scan.publish(6)
    scan.close()
    finish(writer)
    assert (writer.state, writer.reason) == (State.OFF, REASON_DONE)
    names = executor.names()
    assert names[:3] == ["OpenFile", "Tree", "Tree"] and names[-1] == "CloseFile"
    assert names.index("Flush") > names.index("WriteBatch")
    assert executor.of(st.OpenFile)[0].path == str(tmp_path / "data.h5")
    assert [n.value for n in executor.steps[2].nodes] == ["RUNNING"]
    assert final_status(executor) == "SUCCEEDED"
    assert set(rows_written(executor).values()) == {10} and len(rows_written(executor)) == len(scan.shapes)
    assert writer.progress() == {"3.1": {name: 10 for name in scan.shapes}}
    assert journal.pending() == []  # removed once the file is closed


def test_an_unknown_compression_faults_the_scan_before_any_file_is_touched(scan, tmp_path):
    scan.info["writer_options"]["chunk_options"]["compression_scheme"] = "byteshufflegzip-byteshuffle"
    writer, executor, _ = start_writer(scan, tmp_path)
    finish(writer)
    assert writer.state == State.FAULT
    assert "Unknown HDF5 compression 'byteshufflegzip-byteshuffle'" in writer.reason
    assert executor.steps == []


def test_malformed_scan_info_faults_with_the_key_and_no_step(scan, tmp_path):
    scan.info["scan_nb"] = "12"
    writer, executor, _ = start_writer(scan, tmp_path)
    finish(writer)
    assert writer.state == State.FAULT and "scan_nb'] must be a positive integer, got '12'" in writer.reason
    assert executor.steps == []


def test_a_scan_not_saved_ends_off_without_a_file(scan, tmp_path):
    scan.info["save"] = False
    writer, executor, _ = start_writer(scan, tmp_path)
    finish(writer)
    assert writer.state == State.OFF and executor.steps == []


def test_a_stream_outside_the_acquisition_chain_faults_naming_it(scan, tmp_path):
    scan.shapes["ghost:counter"] = ("float64", ())
    scan.available["ghost:counter"], scan.sealed["ghost:counter"] = 0, False
    writer, executor, _ = start_writer(scan, tmp_path)
    finish(writer)
    assert writer.state == State.FAULT and "ghost:counter" in writer.reason
    assert executor.names()[-1] == "CloseFile" and final_status(executor) == "FAILED"


def test_stop_finalises_with_what_was_written_and_faults(scan, tmp_path):
    writer, executor, _ = start_writer(scan, tmp_path)
    scan.publish(3)
    wait_until(lambda: executor.of(st.WriteBatch))
    writer.stop(timeout=20)
    assert (writer.state, writer.reason) == (State.FAULT, "Stop requested")
    assert final_status(executor) == "FAILED" and executor.names()[-1] == "CloseFile"
    assert any(n.path.endswith("/end_time") for n in executor.steps[-2].nodes)  # finalised


def test_kill_writes_only_the_failed_status_reason_and_end_time_then_closes(scan, tmp_path):
    writer, executor, _ = start_writer(scan, tmp_path)
    scan.publish(3)
    wait_until(lambda: executor.of(st.WriteBatch))
    writer.kill()
    finish(writer)
    assert writer.state == State.FAULT and writer.reason.startswith("Killed")
    last_tree = executor.steps[-2]
    assert {n.path.rsplit("/", 1)[-1] for n in last_tree.nodes} == {"status", "failure", "end_time"}
    assert executor.names()[-1] == "CloseFile"


def test_a_failed_write_faults_with_the_writers_reason_and_the_file_says_failed(scan, tmp_path):
    executor = RecordingExecutor()
    executor.fail[st.WriteBatch] = "No space left on device for data.h5"
    writer, executor, _ = start_writer(scan, tmp_path, executor=executor)
    scan.publish(5)
    finish(writer)
    assert writer.state == State.FAULT and "No space left on device" in writer.reason
    assert final_status(executor) == "FAILED" and executor.names()[-1] == "CloseFile"


def test_a_failed_close_faults_a_scan_that_was_complete(scan, tmp_path):
    executor = RecordingExecutor()
    executor.fail[st.CloseFile] = "disk gone"
    writer, executor, _ = start_writer(scan, tmp_path, executor=executor)
    scan.publish(2)
    scan.close()
    finish(writer)
    assert writer.state == State.FAULT and writer.reason == "closing the file failed: disk gone"


def test_data_gone_from_redis_faults_the_scan(scan, tmp_path):
    writer, executor, _ = start_writer(scan, tmp_path)
    scan.publish(3)
    wait_until(lambda: executor.of(st.WriteBatch))
    with scan._lock:
        scan.available = {name: 0 for name in scan.available}  # Redis restarted: streams empty
    finish(writer)
    assert writer.state == State.FAULT and "is gone from Redis" in writer.reason
    assert final_status(executor) == "FAILED"


def test_keepshape_datasets_have_the_grid_shape(tmp_path):
    info = scan_info(ScanSpec("s", str(tmp_path / "mesh.h5"), 4, 6, image_shape=None, mca_channels=None,
                              grid=(3, 2)))
    source = FakeSource(info, shapes_of(info))
    writer, executor, _ = start_writer(source, tmp_path, SaveOptions(flat=False))
    source.publish(6)
    source.close()
    finish(writer)
    assert writer.state == State.OFF, writer.reason
    specs = {w.spec.path: w.spec for b in executor.of(st.WriteBatch) for w in b.writes}
    assert {s.scan_shape for s in specs.values()} == {(2, 3)}


def test_lengths_are_not_asked_while_enough_rows_are_known(scan, tmp_path):
    """blissdata's length is a whole last entry (a frame): while the writers are behind by more rows
    than the next steps take, the driver does not ask again (at least every LENGTHS_MAX_AGE_S)."""
    calls = []
    lengths = scan.lengths
    scan.lengths = lambda names: calls.append(names) or lengths(names)
    scan.publish(400, seal=True)  # a backlog: many steps' worth, all known at the first ask
    tight = Tuning(flush_period_s=10, poll_period_s=0.002, max_delay_s=0.05, disk_check_period_s=10,
                   step_bytes_per_writer=2048, min_step_bytes_per_writer=0)
    channel, executor = one_process_channel()
    writer = ScanDriver(scan, "redis://fake", SaveOptions(), channel, tight, "2.4.5", None)
    writer.start()
    wait_until(lambda: len(executor.of(st.WriteBatch)) > 20)
    scan.close()
    finish(writer)
    assert (writer.state, writer.reason) == (State.OFF, REASON_DONE)
    assert set(rows_written(executor).values()) == {400}
    batches = len(executor.of(st.WriteBatch))
    assert batches > 40 and len(calls) < batches / 4, (len(calls), batches)
