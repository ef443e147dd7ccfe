"""The storing path on real MPI and HDF5 (writers/storing/), without Tango or Redis:

    mpirun -n 3 .venv/bin/python -m pytest -p no:cacheprovider -m mpi tests/mpi
    mpirun -n 5 .venv/bin/python -m pytest -p no:cacheprovider -m mpi tests/mpi

Every rank is a writer rank (COMM_WORLD), the first one the storing rank; rows come from HDF5 files
standing for Lima's and Lima2's. What is checked: the chunks in the file are the bytes HDF5's own
filtered write stores (filter masks included), whatever the split of the rows between the ranks;
partly filled chunks, grids, variable rows and Blosc; a read error or a channel failure on one rank
only; only the storing rank ever opens the scan file.
"""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from nxpar.protocol import steps as st

pytestmark = pytest.mark.mpi

FRAME = (20, 40)  # tiled by (8, 16) chunks: edge tiles padded


@pytest.fixture
def comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture
def shared_dir(comm):
    import shutil
    import tempfile
    from pathlib import Path

    path = Path(comm.bcast(tempfile.mkdtemp(prefix="nxpar-storing-") if comm.rank == 0 else None, root=0))
    yield path
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


def make_executor(comm, storing_share: float | None = 1.0):
    from nxpar.writers.storing.sending_rank import SendingRankExecutor
    from nxpar.writers.storing.shares import ShareSplit
    from nxpar.writers.storing.storing_rank import StoringRankExecutor

    split = ShareSplit(comm.size, storing_share)
    return StoringRankExecutor(comm, split) if comm.rank == 0 else SendingRankExecutor(comm, split)


@pytest.fixture(params=[1.0, 0.5, 0.0, None], ids=["even", "half", "none", "balanced"])
def executor(comm, request):
    ex = make_executor(comm, request.param)
    yield ex
    ex.close_all()


def frames(n: int, seed: int = 0, noise: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if noise:  # incompressible: Blosc leaves such chunks unfiltered (a filter mask)
        return rng.integers(0, 65535, (n,) + FRAME, dtype="uint16")
    base = np.add.outer(np.arange(FRAME[0]), np.arange(FRAME[1])).astype("uint16")
    return base[None] + rng.poisson(3, (n,) + FRAME).astype("uint16")


@pytest.fixture
def lima_file(comm, shared_dir):
    """24 frames: 12 compressible, then 12 of noise."""
    path = shared_dir / "lima.h5"
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["entry/data"] = np.concatenate([frames(12), frames(12, 1, noise=True)])
    comm.Barrier()
    return str(path)


def spec_of(scheme: str, name: str = "data", chunk_rows: int = 3, scan_shape=(), chunks=None) -> st.ArraySpec:
    return st.ArraySpec(path=f"/1.1/instrument/cam/{name}", dtype="uint16", detector_shape=FRAME,
                        chunks=chunks or (chunk_rows, 8, 16), compression=scheme, fillvalue=7,
                        attrs={"interpretation": "image"}, scan_shape=scan_shape)


def frames_write(spec: st.ArraySpec, lima: str, start: int, stop: int, bad=frozenset()) -> st.WriteRows:
    refs = [("HDF5", "/nonexistent/lima.h5" if i in bad else lima, "entry/data", i) for i in range(start, stop)]
    return st.WriteRows(spec, st.FileFramesSource("cam:image", start, refs), start, stop)


def open_scan(ex, path: str) -> None:
    ex.execute(st.OpenFile("scan1", path, {"NX_class": "NXroot"}, ["1.1"]))
    ex.execute(st.Tree("scan1", [st.Node("group", "/1.1", attrs={"NX_class": "NXentry"}),
                                 st.Node("group", "/1.1/instrument/cam", attrs={"NX_class": "NXdetector"})]))


def hdf5_reference(path: str, spec: st.ArraySpec, rows: np.ndarray) -> None:
    """The same dataset written by HDF5 itself (serial, its own filters), rows in one write."""
    from nxpar.writers.datasets import create_array, resize_for

    with h5py.File(path, "w") as f:
        f.create_group("1.1/instrument/cam")
        dset = create_array(f, spec)
        resize_for(dset, spec, len(rows), FRAME)
        dset[:len(rows)] = rows


def chunks_of(dset: h5py.Dataset) -> dict:
    """{chunk origin: (filter mask, stored bytes)} of every stored chunk."""
    out = {}
    for i in range(dset.id.get_num_chunks()):
        info = dset.id.get_chunk_info(i)
        out[info.chunk_offset] = dset.id.read_direct_chunk(info.chunk_offset)
    return out


@pytest.mark.parametrize("scheme", ["gzip-byteshuffle", "lz4-bitshuffle", "blosc-zstd", "none"])
def test_chunks_stored_are_the_bytes_hdf5_stores(comm, executor, shared_dir, lima_file, scheme):
    """Steps whose ends fall inside chunks (partial chunks through HDF5 on the storing rank, merged
    later), edge tiles padded, noise Blosc leaves unfiltered: chunk for chunk, HDF5's own bytes."""
    path, reference = str(shared_dir / "scan.h5"), str(shared_dir / "reference.h5")
    spec = spec_of(scheme)
    open_scan(executor, path)
    for lo, hi in [(0, 5), (5, 13), (13, 14), (14, 24)]:
        executor.execute(st.WriteBatch("scan1", [frames_write(spec, lima_file, lo, hi)]))
    executor.execute(st.Flush("scan1"))
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(lima_file, "r") as f:
        expected = f["entry/data"][()]
    if comm.rank == 0:
        hdf5_reference(reference, spec, expected)
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f, h5py.File(reference, "r") as ref:
        data, by_hdf5 = f["1.1/instrument/cam/data"], ref["1.1/instrument/cam/data"]
        np.testing.assert_array_equal(data[()], expected)
        assert data.attrs["interpretation"] == "image" and f.attrs["NX_class"] == "NXroot"
        assert chunks_of(data) == chunks_of(by_hdf5)
        if scheme == "blosc-zstd":  # the noise chunks were left unfiltered, as HDF5 leaves them
            assert {mask for mask, _ in chunks_of(data).values()} == {0, 1}


def test_a_grid_is_written_through_the_storing_rank(comm, executor, shared_dir, lima_file):
    path = str(shared_dir / "grid.h5")
    spec = spec_of("gzip-byteshuffle", scan_shape=(4, 6), chunks=(1, 3, 8, 16))
    open_scan(executor, path)
    for lo, hi in [(0, 7), (7, 24)]:
        executor.execute(st.WriteBatch("scan1", [frames_write(spec, lima_file, lo, hi)]))
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f, h5py.File(lima_file, "r") as lima:
        np.testing.assert_array_equal(f["1.1/instrument/cam/data"][()], lima["entry/data"][()].reshape((4, 6) + FRAME))


def runs_file(shared_dir, name: str, width: int, n: int = 8) -> str:
    path = str(shared_dir / name)
    with h5py.File(path, "w") as f:
        f["d"] = np.arange(n * width, dtype="int32").reshape(n, width) + width
    return path


def test_variable_rows_are_padded_to_the_longest_of_any_rank(comm, executor, shared_dir):
    """Rows 0..7 are 5 wide, rows 8..11 8 wide (another rank's share): every row padded to 8."""
    if comm.rank == 0:
        narrow, wide = runs_file(shared_dir, "narrow.h5", 5), runs_file(shared_dir, "wide.h5", 8)
    narrow, wide = comm.bcast((narrow, wide) if comm.rank == 0 else None, root=0)
    spec = st.ArraySpec(path="/1.1/instrument/cam/spectrum", dtype="int32", detector_shape=(-1,), chunks=(4, 8),
                        compression="gzip", fillvalue=-1)
    write = st.WriteRows(spec, st.FileRunsSource("cam:spectrum", 0, [(narrow, "d", 0, 8), (wide, "d", 0, 4)]), 0, 12)
    open_scan(executor, str(shared_dir / "var.h5"))
    executor.execute(st.WriteBatch("scan1", [write]))
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(shared_dir / "var.h5", "r", locking=False) as f:
        got = f["1.1/instrument/cam/spectrum"][()]
    assert got.shape == (12, 8)
    np.testing.assert_array_equal(got[:8, :5], np.arange(40, dtype="int32").reshape(8, 5) + 5)
    assert (got[:8, 5:] == -1).all()
    np.testing.assert_array_equal(got[8:], np.arange(32, dtype="int32").reshape(4, 8) + 8)


def last_rank_rows(comm, executor, n: int, chunk_rows: int, scheme: str) -> set[int]:
    """The rows the last rank will read in the next batch of rows [0, n) (`scheme`: the batch's)."""
    (lo, hi), = executor.batch.split.shares([(0, n, chunk_rows, 2 * 20 * 40, 1)], scheme, comm.size - 1)
    return set(range(lo, hi))


def test_a_read_error_on_one_rank_fails_the_step_everywhere_and_the_file_stays_usable(comm, executor, shared_dir,
                                                                                   lima_file):
    from nxpar.writers.agreement import StepFailed

    path = str(shared_dir / "scan.h5")
    spec = spec_of("gzip-byteshuffle")
    open_scan(executor, path)
    bad = last_rank_rows(comm, executor, 24, 3, "gzip-byteshuffle")
    with pytest.raises(StepFailed, match="nonexistent"):
        executor.execute(st.WriteBatch("scan1", [frames_write(spec, lima_file, 0, 24, bad=bad)]))
    executor.execute(st.WriteBatch("scan1", [frames_write(spec, lima_file, 0, 24)]))
    executor.execute(st.Tree("scan1", [st.Node("value", "/1.1/writer_status", "SUCCEEDED")]))
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f, h5py.File(lima_file, "r") as lima:
        np.testing.assert_array_equal(f["1.1/instrument/cam/data"][()], lima["entry/data"][()])
        assert f["1.1/writer_status"][()] == b"SUCCEEDED"


def test_a_channel_unreadable_on_one_rank_is_given_up_everywhere_and_the_rest_written(comm, executor, shared_dir,
                                                                                     lima_file):
    path = str(shared_dir / "scan.h5")
    open_scan(executor, path)
    spec = st.ArraySpec(path="/1.1/instrument/eiger/frame", dtype="uint16", detector_shape=FRAME,
                        chunks=(3,) + FRAME, compression="lz4-bitshuffle", fillvalue=0)
    first_bad = min(last_rank_rows(comm, executor, 24, 3, "lz4-bitshuffle"))
    runs = [(lima_file, "entry/data", 0, first_bad), (str(shared_dir / "not_closed.h5"), "entry/data", 0, 24)]
    eiger = st.WriteRows(spec, st.FileRunsSource("eiger:frame", 0, runs), 0, 24)
    failed = executor.execute(st.WriteBatch("scan1", [eiger, frames_write(spec_of("gzip"), lima_file, 0, 24)]))
    assert list(failed) == ["eiger:frame"] and failed["eiger:frame"].kind == st.FailureKind.UNREADABLE
    readable = st.WriteRows(spec, st.FileRunsSource("eiger:frame", 0, [(lima_file, "entry/data", 0, 24)]), 0, 24)
    assert list(executor.execute(st.WriteBatch("scan1", [readable]))) == ["eiger:frame"]
    executor.execute(st.CloseFile("scan1"))
    assert executor.batch.given_up == {}
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f, h5py.File(lima_file, "r") as lima:
        np.testing.assert_array_equal(f["1.1/instrument/cam/data"][()], lima["entry/data"][()])
        assert "1.1/instrument/eiger/frame" not in f


def same_file(fd_link: str, path: str) -> bool:
    """The open file behind `fd_link` is `path` (by inode: a file is created under a hidden name, then linked)."""
    try:
        a, b = os.stat(fd_link), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_only_the_storing_rank_opens_the_file_and_applies_the_metadata(comm, executor, shared_dir, lima_file):
    path = str(shared_dir / "scan.h5")
    open_scan(executor, path)
    executor.execute(st.WriteBatch("scan1", [frames_write(spec_of("lz4-bitshuffle"), lima_file, 0, 24)]))
    opened = any(same_file(os.path.join("/proc/self/fd", fd), path) for fd in os.listdir("/proc/self/fd"))
    assert opened == (comm.rank == 0)
    executor.execute(st.Tree("scan1", [st.Node("value", "/1.1/title", "x")]))
    executor.execute(st.Flush("scan1"))
    executor.execute(st.CloseFile("scan1"))
    comm.Barrier()
    with h5py.File(path, "r", locking=False) as f:
        assert f["1.1/title"][()] == b"x" and f["1.1/instrument/cam/data"].shape == (24,) + FRAME


def test_a_step_for_a_scan_without_a_file_fails_on_every_rank(comm, executor, shared_dir, lima_file):
    from nxpar.writers.agreement import StepFailed

    with pytest.raises(StepFailed, match="no open file"):
        executor.execute(st.WriteBatch("nofile", [frames_write(spec_of("gzip"), lima_file, 0, 24)]))


def test_a_dataset_that_cannot_be_made_fails_the_step_everywhere(comm, executor, shared_dir, lima_file):
    from nxpar.writers.agreement import StepFailed

    open_scan(executor, str(shared_dir / "scan.h5"))
    executor.execute(st.Tree("scan1", [st.Node("value", "/1.1/instrument/cam/data", "taken")]))
    with pytest.raises(StepFailed, match="cam:image: resizing"):
        executor.execute(st.WriteBatch("scan1", [frames_write(spec_of("gzip"), lima_file, 0, 24)]))
    executor.execute(st.CloseFile("scan1"))


def test_the_rank_loop_takes_the_storing_path_by_default_and_mpio_on_request(comm, monkeypatch):
    from nxpar.writers.executor import StepExecutor
    from nxpar.writers.rank_loop import executor_for
    from nxpar.writers.storing.storing_rank import StoringRankExecutor
    from nxpar.writers.write_mode import MpioWrites

    monkeypatch.delenv("NXPAR_WRITE_MODE", raising=False)
    monkeypatch.delenv("NXPAR_SERIAL_DRIVER", raising=False)
    ex = executor_for(comm)
    assert isinstance(ex, StoringRankExecutor) == (comm.rank == 0)
    ex.close_all()
    monkeypatch.setenv("NXPAR_WRITE_MODE", "mpio")
    ex = executor_for(comm)
    assert isinstance(ex, StepExecutor) and isinstance(ex.write_mode, MpioWrites)
    ex.close_all()
