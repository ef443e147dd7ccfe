"""The collective executor on real MPI, without Tango or Redis (as h5py tests its MPI code):

    mpirun -n 3 .venv/bin/python -m pytest -p no:cacheprovider -m mpi tests/mpi

Every rank is a writer rank (COMM_WORLD); rows come from HDF5 files standing for Lima's
(`FileFramesSource`), so no Redis is needed. Each test makes every rank call the same steps in
the same order, as the writer loop does; a failure on one rank must fail all ranks together.
Skipped outside mpirun (tests/conftest.py).
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from nxpar.protocol import steps as st

pytestmark = pytest.mark.mpi

FRAME = (4, 4)


@pytest.fixture
def comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture
def shared_dir(comm):
    """One fresh directory for all ranks, made and removed by rank 0 (pytest's tmp_path is per
    process: three ranks would make three)."""
    import shutil
    import tempfile
    from pathlib import Path

    path = Path(comm.bcast(tempfile.mkdtemp(prefix="nxpar-mpi-") if comm.rank == 0 else None, root=0))
    yield path
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def executor(comm):
    from nxpar.writers.executor import StepExecutor
    from tests.mpi.conftest import ABANDONED

    ex = StepExecutor(comm)
    ABANDONED.append(ex.files.abandoned)
    yield ex
    ex.close_all()


@pytest.fixture
def lima_file(comm, shared_dir):
    """12 frames in an HDF5 file (Lima's), made by rank 0."""
    path = shared_dir / "lima.h5"
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["entry/data"] = np.arange(12 * 16, dtype="uint16").reshape((12,) + FRAME)
    comm.Barrier()
    return str(path)


def frames_write(lima: str, start: int, stop: int, bad: set[int] = frozenset()) -> st.WriteRows:
    spec = st.ArraySpec(path="/1.1/instrument/cam/data", dtype="uint16", detector_shape=FRAME, chunks=(2,) + FRAME,
                        compression="gzip", fillvalue=0, attrs={"interpretation": "image"})
    refs = [("HDF5", "/nonexistent/lima.h5" if i in bad else lima, "entry/data", i) for i in range(start, stop)]
    return st.WriteRows(spec, st.FileFramesSource("cam:image", start, refs), start, stop)


def open_scan(executor, path: str) -> None:
    executor.execute(st.OpenFile("scan1", path, {"NX_class": "NXroot"}, ["1.1"]))
    executor.execute(st.Tree("scan1", [st.Node("group", "/1.1", attrs={"NX_class": "NXentry"}),
                                       st.Node("group", "/1.1/instrument/cam", attrs={"NX_class": "NXdetector"})]))


def test_rows_written_by_all_ranks_land_in_one_file(comm, executor, shared_dir, lima_file):
    path = str(shared_dir / "scan.h5")
    open_scan(executor, path)
    executor.execute(st.WriteBatch("scan1", [frames_write(lima_file, 0, 5)]))  # a partial chunk ...
    executor.execute(st.WriteBatch("scan1", [frames_write(lima_file, 5, 12)]))  # ... completed later
    executor.execute(st.Flush("scan1"))
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f:
        data = f["1.1/instrument/cam/data"]
        assert data.shape == (12,) + FRAME and data.chunks == (2,) + FRAME
        assert data.attrs["interpretation"] == "image" and f.attrs["NX_class"] == "NXroot"
        np.testing.assert_array_equal(data[()], np.arange(12 * 16, dtype="uint16").reshape((12,) + FRAME))


def test_a_read_error_on_one_rank_fails_every_rank_and_the_file_stays_usable(comm, executor, shared_dir, lima_file):
    from nxpar.writers.executor import StepFailed

    path = str(shared_dir / "scan.h5")
    open_scan(executor, path)
    # rows 8..11 are the last rank's share (whole chunks of 2 rows, 3 ranks): only it fails to read
    with pytest.raises(StepFailed, match="nonexistent"):
        executor.execute(st.WriteBatch("scan1", [frames_write(lima_file, 0, 12, bad={8, 9, 10, 11})]))
    executor.execute(st.WriteBatch("scan1", [frames_write(lima_file, 0, 12)]))
    executor.execute(st.Tree("scan1", [st.Node("value", "/1.1/writer_status", "SUCCEEDED")]))
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f:
        assert f["1.1/instrument/cam/data"].shape[0] == 12 and f["1.1/writer_status"][()] == b"SUCCEEDED"


def test_an_uncreatable_directory_fails_every_rank(executor, shared_dir, comm):
    from nxpar.writers.executor import StepFailed

    if comm.rank == 0:
        (shared_dir / "a_file").write_text("")
    comm.Barrier()
    with pytest.raises(StepFailed, match="Cannot create directory"):
        executor.execute(st.OpenFile("scan1", str(shared_dir / "a_file" / "sub" / "x.h5"), {}, ["1.1"]))
    assert executor.files.scan_files == {}


def test_an_existing_entry_is_never_overwritten(executor, shared_dir):
    from nxpar.writers.executor import StepFailed

    path = str(shared_dir / "scan.h5")
    open_scan(executor, path)
    executor.execute(st.CloseFile("scan1"))
    with pytest.raises(StepFailed, match="Scan 1.1 already exists"):
        executor.execute(st.OpenFile("scan2", path, {}, ["1.1"]))


def test_a_file_left_running_by_a_dead_job_is_marked_failed(comm, executor, shared_dir):
    path = str(shared_dir / "left.h5")
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["1.1/writer/status"] = "RUNNING"
            f["2.1/writer/status"] = "SUCCEEDED"
    comm.Barrier()
    executor.execute(st.MarkFailed(path, ["1.1", "2.1"], "interrupted"))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f:
        assert f["1.1/writer/status"][()] == b"FAILED" and f["1.1/writer/failure"][()] == b"interrupted"
        assert f["2.1/writer/status"][()] == b"SUCCEEDED" and "failure" not in f["2.1/writer"]


def test_every_step_type_has_a_handler_and_unknown_ones_fail_everywhere(executor):
    from nxpar.writers.executor import StepFailed

    steps = {st.OpenFile, st.Tree, st.WriteBatch, st.Flush, st.CloseFile, st.LocalFile, st.MarkFailed}
    assert set(executor._handlers) == steps
    with pytest.raises(StepFailed, match="unknown step"):
        executor.execute(st.StepResult(True))


def runs_write(runs: list[tuple[str, str, int, int]], start: int, stop: int) -> st.WriteRows:
    """Lima2 frames (a plugin source: read errors cost this write only) from runs of HDF5 files."""
    spec = st.ArraySpec(path="/1.1/instrument/eiger/frame", dtype="uint16", detector_shape=FRAME,
                        chunks=(2,) + FRAME, compression="gzip", fillvalue=0)
    return st.WriteRows(spec, st.FileRunsSource("eiger:frame", start, runs), start, stop)


def test_an_unreadable_plugin_write_is_skipped_on_every_rank_and_the_rest_written(comm, executor, shared_dir,
                                                                                  lima_file):
    """A Lima2/Mosca write that one rank cannot read (a receiver's file not closed, a server gone) is
    skipped on every rank and named in the step's value; the other writes of the batch are written;
    later writes of that channel in the scan are skipped too."""
    path = str(shared_dir / "scan.h5")
    open_scan(executor, path)
    # rows 8..11 are the last rank's share (whole chunks of 2 rows, 3 ranks): only it fails to read
    runs = [(lima_file, "entry/data", 0, 8), (str(shared_dir / "not_closed.h5"), "entry/data", 0, 4)]
    failed = executor.execute(st.WriteBatch("scan1", [runs_write(runs, 0, 12), frames_write(lima_file, 0, 12)]))
    assert list(failed) == ["eiger:frame"] and "not_closed.h5" in failed["eiger:frame"].reason
    assert failed["eiger:frame"].kind == st.FailureKind.UNREADABLE
    readable = runs_write([(lima_file, "entry/data", 0, 12)], 0, 12)
    assert list(executor.execute(st.WriteBatch("scan1", [readable]))) == ["eiger:frame"]
    executor.execute(st.Tree("scan1", [st.Node("value", "/1.1/writer_status", "SUCCEEDED")]))
    executor.execute(st.CloseFile("scan1"))
    assert executor.given_up == {}
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f:
        np.testing.assert_array_equal(f["1.1/instrument/cam/data"][()],
                                      np.arange(12 * 16, dtype="uint16").reshape((12,) + FRAME))
        assert "1.1/instrument/eiger/frame" not in f and f["1.1/writer_status"][()] == b"SUCCEEDED"


def test_a_readable_plugin_write_returns_no_failure(comm, executor, shared_dir, lima_file):
    path = str(shared_dir / "scan.h5")
    open_scan(executor, path)
    assert executor.execute(st.WriteBatch("scan1", [runs_write([(lima_file, "entry/data", 0, 12)], 0, 12)])) == {}
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f:
        np.testing.assert_array_equal(f["1.1/instrument/eiger/frame"][()],
                                      np.arange(12 * 16, dtype="uint16").reshape((12,) + FRAME))


def test_a_stale_view_on_one_rank_cannot_split_create_and_open(comm, executor, shared_dir, monkeypatch):
    """One node's stale view of the directory (NFS): its rank would create where the others open. The
    first writer rank decides for all (issue 21): the file opens on every rank, nobody hangs."""
    import os

    path = str(shared_dir / "stale.h5")
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["earlier/x"] = 1
    comm.Barrier()
    if comm.rank == 1:
        real = os.path.exists
        monkeypatch.setattr(os.path, "exists", lambda p: False if str(p) == path else real(p))
    open_scan(executor, path)
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f:
        assert f["earlier/x"][()] == 1 and "1.1" in f  # opened, not created anew


def test_a_step_that_fails_on_one_rank_only_fails_on_every_rank_and_the_service_goes_on(comm, executor, shared_dir,
                                                                                       monkeypatch, lima_file):
    """A collective call that fails on one rank only (issue 21): the step fails on every rank through the
    agreement, nobody hangs or aborts; that file gets nothing more (the ranks' views of it differ), it is
    closed, and the other scans' files go on."""
    from nxpar.writers import executor as executor_module
    from nxpar.writers.agreement import StepFailed

    path = str(shared_dir / "one.h5")
    open_scan(executor, path)
    if comm.rank == 2:
        def broken(f, nodes):
            raise OSError("disk quota exceeded")
        monkeypatch.setattr(executor_module, "apply_nodes", broken)
    with pytest.raises(StepFailed, match="disk quota exceeded"):
        executor.execute(st.Tree("scan1", [st.Node("value", "/1.1/title", "x")]))
    monkeypatch.undo()
    with pytest.raises(StepFailed, match="views of it differ"):
        executor.execute(st.Tree("scan1", [st.Node("value", "/1.1/end", "y")]))
    with pytest.raises(StepFailed):
        executor.execute(st.CloseFile("scan1"))
    other = str(shared_dir / "other.h5")  # the next scan is written normally
    executor.execute(st.OpenFile("scan2", other, {"NX_class": "NXroot"}, ["2.1"]))
    executor.execute(st.Tree("scan2", [st.Node("group", "/2.1", attrs={"NX_class": "NXentry"}),
                                       st.Node("group", "/2.1/instrument/cam", attrs={"NX_class": "NXdetector"})]))
    write = frames_write(lima_file, 0, 12)
    write.spec.path = "/2.1/instrument/cam/data"
    executor.execute(st.WriteBatch("scan2", [write]))
    executor.execute(st.CloseFile("scan2"))
    comm.Barrier()
    with h5py.File(other, "r", locking=False) as f:
        np.testing.assert_array_equal(f["2.1/instrument/cam/data"][()],
                                      np.arange(12 * 16, dtype="uint16").reshape((12,) + FRAME))


def test_a_deleted_file_fails_flush_and_close_on_every_rank_and_the_path_is_made_to_say_so(comm, executor,
                                                                                         shared_dir):
    import os

    from nxpar.writers.agreement import StepFailed

    path = str(shared_dir / "gone.h5")
    open_scan(executor, path)
    comm.Barrier()
    if comm.rank == 0:
        os.unlink(path)
    comm.Barrier()
    with pytest.raises(StepFailed, match="was deleted while the scan was being written"):
        executor.execute(st.Flush("scan1"))
    with pytest.raises(StepFailed, match="was deleted"):
        executor.execute(st.CloseFile("scan1"))
    executor.execute(st.MarkFailed(path, ["1.1"], "the file was deleted", "2026-12-03T10:00:00+01:00",
                                   create_missing=True))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f:
        assert f["1.1/writer/status"][()] == b"FAILED" and f["1.1/writer/failure"][()] == b"the file was deleted"
        assert f["1.1/end_time"][()] == b"2026-12-03T10:00:00+01:00"


def test_a_scan_written_again_replaces_its_entry_and_leaves_the_others(comm, executor, shared_dir, lima_file):
    path = str(shared_dir / "again.h5")
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["0.1/untouched"] = 7
            f["1.1/instrument/cam/data"] = np.zeros((3,) + FRAME, dtype="uint16")  # what a dead run left
    comm.Barrier()
    executor.execute(st.OpenFile("scan1", path, {"NX_class": "NXroot"}, ["1.1"], replace_entries=True))
    executor.execute(st.Tree("scan1", [st.Node("group", "/1.1", attrs={"NX_class": "NXentry"}),
                                       st.Node("group", "/1.1/instrument/cam", attrs={"NX_class": "NXdetector"})]))
    executor.execute(st.WriteBatch("scan1", [frames_write(lima_file, 0, 12)]))
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f:
        assert f["0.1/untouched"][()] == 7
        np.testing.assert_array_equal(f["1.1/instrument/cam/data"][()],
                                      np.arange(12 * 16, dtype="uint16").reshape((12,) + FRAME))
