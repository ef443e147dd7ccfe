"""ALL WRITER RANKS: how this rank's scan files are written, chosen once per executor.

The path (`WritePath`, `write_path`): one writer process writes alone (DIRECT); several writer ranks
go through one storing rank (STORING, writers/storing/: the default) or write the file together through
MPI-IO (MPIO: NXPAR_WRITE_MODE=mpio, or NXPAR_SERIAL_DRIVER=0, which also puts one writer process on
the MPI-IO driver, e.g. to compare). perf/SCALING.md gives the numbers behind the default.

Three modes, one interface (`WriteMode`), so that the executor's steps read the same for all:

* `MpioWrites`: files opened with the MPI-IO driver, every raw-data write a collective or independent
  MPI-IO transfer that every writer rank enters, an empty selection when it has no rows.
* `DirectWrites`: one writer process (a communicator of size 1): files opened with the serial
  driver; the whole chunks of a write are compressed outside HDF5 and stored one step behind
  (`direct/chunk_writer.py`), the rest goes through HDF5. Every step first stores the previous
  step's chunks (a row write excepted: its reads overlap them), and chunks lost in the background
  fail their scan's next step.
* `SerialWrites`: the storing rank's files (serial driver, flushed as DirectWrites' are: `FsyncPolicy`); its
  row writes are the storing executor's own (writers/storing/storing_rank.py).
"""
from __future__ import annotations

import enum
import os
from typing import Any, Callable, Protocol

import h5py
import numpy as np
from mpi4py import MPI

from ..protocol import steps as st
from .agreement import StepFailed
from .datasets import needs_collective, write_selection
from .direct.chunk_writer import ChunksLost, DirectChunkStore


class WriteMode(Protocol):
    """What the executor asks of the way its files are written."""

    serial: bool  # files opened with the serial driver (file_access.open_scan_file)

    def run_step(self, call: Callable[[], Any], step: Any) -> Any:
        """call()'s result: the step's handler, run with what this mode does around a step."""

    def before_change(self, dset: h5py.Dataset) -> None:
        """Before `dset` is resized or written."""

    def write_rows(self, scan_id: str, spec: st.ArraySpec, dset: h5py.Dataset, lo: int,
                   rows: np.ndarray | None) -> None:
        """COLLECTIVE: this rank's rows [lo, lo + len(rows)) of `dset` (already resized); None: none."""

    def forget(self, scan_id: str) -> None:
        """The scan's datasets are closed or deleted."""

    def flush(self, f: h5py.File) -> None:
        """COLLECTIVE: what was written to `f` is on disk."""

    def store_all(self, scan_ids: list[str]) -> None:
        """Shutdown, before the files close."""

    def close(self) -> None:
        """Shutdown, after the files closed."""


class FsyncPolicy(enum.Enum):
    """When a serial-driver file (one writer process, the storing rank) is forced to disk, NXPAR_FSYNC:
    CLOSE (the default): only once closed, by rank 0's durability thread (driver/durability.py) before
    the journal forgets the scan — between flushes the page cache holds the rows (readers see them), as
    with blisswriter, which never fsyncs, and a host crash before that fsync is covered by resume from
    Redis; FLUSH: also at every periodic flush, as the MPI-IO driver's flush does (MPI_File_sync). An
    fsync at a flush does not make a host crash between flushes safe either (the kernel writes dirty
    pages back in any order), so it buys no integrity resume does not give; measured in perf/SCALING.md
    ("live-slices"): the file closed sooner after the scan's end and a faster live scan without it."""

    FLUSH = "flush"
    CLOSE = "close"


def fsync_at_every_flush(environ: Any = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("NXPAR_FSYNC", FsyncPolicy.CLOSE.value).strip().lower() == FsyncPolicy.FLUSH.value


class WritePath(enum.Enum):
    DIRECT = "direct"  # one writer process: serial driver, whole chunks pre-compressed (DirectWrites)
    STORING = "storing"  # several: one storing rank holds the files, every rank compresses its chunks
    MPIO = "mpio"  # several (or one, to compare): every rank writes through MPI-IO (MpioWrites)


def write_path(writers: int, environ: Any = None) -> WritePath:
    """The path for `writers` writer ranks: NXPAR_WRITE_MODE=mpio or NXPAR_SERIAL_DRIVER=0 ask for MPI-IO
    (NXPAR_WRITE_MODE=storing, or unset: the default); otherwise DIRECT for one, STORING for several."""
    env = os.environ if environ is None else environ
    asked = env.get("NXPAR_WRITE_MODE", "").strip().lower()
    if asked == WritePath.MPIO.value or env.get("NXPAR_SERIAL_DRIVER", "1") == "0":
        return WritePath.MPIO
    return WritePath.DIRECT if writers == 1 else WritePath.STORING


def write_mode_for(comm: MPI.Intracomm) -> WriteMode:
    """The write mode of a StepExecutor on `comm`: DirectWrites for one writer process, else MPI-IO
    (several writer ranks on the storing path use writers/storing/'s executors instead)."""
    if comm.size == 1 and write_path(1) is WritePath.DIRECT:
        return DirectWrites()
    return MpioWrites()


class WritesThroughHdf5:
    """Rows written through HDF5 as each step comes, nothing deferred: the steps' hooks do nothing."""

    def run_step(self, call: Callable[[], Any], step: Any) -> Any:
        return call()

    def before_change(self, dset: h5py.Dataset) -> None:
        pass

    def forget(self, scan_id: str) -> None:
        pass

    def store_all(self, scan_ids: list[str]) -> None:
        pass

    def close(self) -> None:
        pass


class MpioWrites(WritesThroughHdf5):
    """Files opened with the MPI-IO driver: every writer rank enters every raw-data write."""

    serial = False

    def write_rows(self, scan_id: str, spec: st.ArraySpec, dset: h5py.Dataset, lo: int,
                   rows: np.ndarray | None) -> None:
        transfer = h5py.h5fd.MPIO_COLLECTIVE if needs_collective(spec, dset) else h5py.h5fd.MPIO_INDEPENDENT
        write_selection(dset, spec.scan_ndim, lo, rows, transfer)

    def flush(self, f: h5py.File) -> None:
        f.flush()  # the mpio driver's flush ends in MPI_File_sync


class SerialWrites(WritesThroughHdf5):
    """Files of one process (serial driver), rows through HDF5; a flush reaches the page cache (readers
    see it), and the disk too with NXPAR_FSYNC=flush (`FsyncPolicy`)."""

    serial = True

    def write_rows(self, scan_id: str, spec: st.ArraySpec, dset: h5py.Dataset, lo: int,
                   rows: np.ndarray | None) -> None:
        write_selection(dset, spec.scan_ndim, lo, rows, transfer=None)

    def flush(self, f: h5py.File) -> None:
        f.flush()
        if fsync_at_every_flush():
            os.fsync(f.id.get_vfd_handle())  # as MPI_File_sync does behind the mpio driver's flush


class DirectWrites(SerialWrites):
    """One writer process, serial driver: whole chunks pre-compressed on a thread pool, one step behind."""

    def __init__(self) -> None:
        self.store = DirectChunkStore()

    def run_step(self, call: Callable[[], Any], step: Any) -> Any:
        try:  # the previous step's chunks stored first, unless this is a row write; lost ones fault their scan
            return self.store.run_step(call, getattr(step, "scan_id", None),
                                       waits=not isinstance(step, st.WriteBatch), closes=isinstance(step, st.CloseFile))
        except ChunksLost as e:
            raise StepFailed(str(e)) from e

    def before_change(self, dset: h5py.Dataset) -> None:
        self.store.wait_for(dset)  # its chunks of the previous step stored before it changes

    def write_rows(self, scan_id: str, spec: st.ArraySpec, dset: h5py.Dataset, lo: int,
                   rows: np.ndarray | None) -> None:
        if rows is not None and len(rows):  # whole chunks pre-compressed
            rows = self.store.store_rows(scan_id, spec, dset, lo, rows)  # the rest through HDF5
        write_selection(dset, spec.scan_ndim, lo, rows, transfer=None)

    def forget(self, scan_id: str) -> None:
        self.store.forget(scan_id)

    def store_all(self, scan_ids: list[str]) -> None:
        self.store.store_all(scan_ids)  # every chunk stored before any file closes

    def close(self) -> None:
        self.store.close()
