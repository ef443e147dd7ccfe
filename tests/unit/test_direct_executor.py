"""The executor of one writer process (communicator of size 1: serial driver, chunks compressed
outside HDF5, stored one step behind), on real HDF5 with rows from an HDF5 file standing for
Lima's, so no Redis: what is stored when, and where a failure storing chunks goes."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from nxpar.protocol import steps as st
from nxpar.writers.direct import chunk_writer
from nxpar.writers.direct.chunk_codec import ChunkEncoder, FilterFunc, FilterStep
from nxpar.writers.executor import StepExecutor, StepFailed
from nxpar.writers.write_mode import DirectWrites

FRAME = (8, 8)
FRAMES = np.arange(12 * 64, dtype="uint16").reshape((12,) + FRAME) % 251


@pytest.fixture
def lima(tmp_path) -> str:
    path = tmp_path / "lima.h5"
    with h5py.File(path, "w") as f:
        f["entry/data"] = FRAMES
    return str(path)


def frames_write(lima: str, start: int, stop: int) -> st.WriteRows:
    spec = st.ArraySpec(path="/1.1/instrument/cam/data", dtype="uint16", detector_shape=FRAME, chunks=(4,) + FRAME,
                        compression="lz4-bitshuffle", fillvalue=0)
    refs = [("HDF5", lima, "entry/data", i) for i in range(start, stop)]
    return st.WriteRows(spec, st.FileFramesSource("cam:image", start, refs), start, stop)


def open_scan(ex: StepExecutor, path: str, scan: str = "scan1", entry: str = "1.1") -> None:
    ex.execute(st.OpenFile(scan, path, {"NX_class": "NXroot"}, [entry]))
    ex.execute(st.Tree(scan, [st.Node("group", f"/{entry}/instrument/cam", attrs={"NX_class": "NXdetector"})]))


def test_one_writer_stores_chunks_itself_and_shutdown_waits_for_them(tmp_path, lima):
    ex = StepExecutor(MPI.COMM_SELF)
    assert isinstance(ex.write_mode, DirectWrites) and ex.write_mode.serial
    path = str(tmp_path / "scan.h5")
    open_scan(ex, path)
    ex.execute(st.WriteBatch("scan1", [frames_write(lima, 0, 6)]))  # chunk 0 direct, chunk 1 stored padded
    ex.execute(st.WriteBatch("scan1", [frames_write(lima, 6, 12)]))  # rows 6, 7 merged by HDF5, chunk 2 direct
    assert ex.write_mode.store.encoders[("scan1", "/1.1/instrument/cam/data")] is not None
    ex.close_all()  # shutdown with chunks pending: stored before the file closes
    with h5py.File(path, "r", locking=False) as f:
        np.testing.assert_array_equal(f["1.1/instrument/cam/data"][()], FRAMES)


def test_a_failure_storing_chunks_faults_its_scan_before_its_next_step_not_another_scan(tmp_path, lima, monkeypatch):
    failing = ChunkEncoder([FilterStep(FilterFunc(lambda *args: 0), 1, ())], (4,) + FRAME, np.dtype("uint16"))
    monkeypatch.setattr(chunk_writer, "encoder_for", lambda dset: failing)
    ex = StepExecutor(MPI.COMM_SELF)
    try:
        open_scan(ex, str(tmp_path / "a.h5"))
        ex.execute(st.WriteBatch("scan1", [frames_write(lima, 0, 8)]))  # fails in the background
        open_scan(ex, str(tmp_path / "b.h5"), "scan2", "2.1")  # another scan's steps wait, and go on
        with pytest.raises(StepFailed, match="storing compressed chunks failed.*filter 0"):
            ex.execute(st.Tree("scan1", [st.Node(st.NodeOp.VALUE, "/1.1/writer/status", "SUCCEEDED")]))
        ex.execute(st.CloseFile("scan1"))  # reported once; the file closes
        with h5py.File(tmp_path / "a.h5", "r", locking=False) as f:
            assert "1.1/writer/status" not in f  # nothing was written over the lost chunks
    finally:
        ex.close_all()


def test_one_writer_process_with_the_serial_driver_turned_off_writes_through_mpi_io(monkeypatch):
    from nxpar.writers.write_mode import MpioWrites, write_mode_for

    monkeypatch.setenv("NXPAR_SERIAL_DRIVER", "0")
    assert isinstance(write_mode_for(MPI.COMM_SELF), MpioWrites) and not write_mode_for(MPI.COMM_SELF).serial
