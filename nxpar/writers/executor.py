"""ALL WRITER RANKS: execute steps collectively on the scan files.

Every public method here is collective over `comm` (the writer communicator): each writer rank
must call it with the same step, in the same order. Work that can fail on one rank only
(reading Redis, creating directories) happens first and is followed by an agreement
(`_agree`), so that no rank enters a collective HDF5 call that another rank skips. A WriteBatch
whose Lima2 / Mosca rows cannot be read skips those writes on every rank and says which in its
result (`share_reads.py`): the scan goes on without that channel.

The executor owns the scans' open files and the order of each step; the datasets and the
selection write are `datasets.py`'s, the agreement `agreement.py`'s, and how the files are written
(MPI-IO by several ranks, or one writer process storing whole chunks itself) `write_mode.py`'s,
chosen once here.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

import h5py
import numpy as np
from mpi4py import MPI

from ..protocol import steps as st
from ..sources.redis_reader import StreamReader
from ..util.disk import free_bytes
from . import layout
from .agreement import Diverged, StepFailed, agree, collectively
from .datasets import RowDatasets, resize_for, share_of_rows
from .share_reads import read_and_agree, redis_reads
from .scan_files import ScanFiles
from .tree import apply_nodes, set_root_attrs
from .write_mode import WriteMode, write_mode_for

log = logging.getLogger("nxpar.collective")


# Free space kept in reserve: rows are refused below it, so that metadata (flushes, the final status,
# closing) still fits; metadata steps are refused only below METADATA_MARGIN_BYTES.
SPACE_RESERVE_BYTES = 4 << 20
METADATA_MARGIN_BYTES = 256 << 10


class StepExecutor:
    """Holds the open scan files of this rank and applies steps to them."""

    def __init__(self, comm: MPI.Intracomm, write_mode: WriteMode | None = None) -> None:
        self.comm = comm
        self.datasets = RowDatasets()
        # several writer ranks: MPI-IO; one writer process: the serial driver, whole chunks stored
        # pre-compressed (write_mode.py); the storing rank gives its own (writers/storing/)
        self.write_mode = write_mode or write_mode_for(comm)
        self.files = ScanFiles(comm, self.write_mode)
        # scan id -> {stream: failure}: channels whose rows could not be read or are not as declared (agreed:
        # the same on every rank); their later writes in the scan are skipped too
        self.given_up: dict[str, dict[str, st.ChannelFailure]] = {}
        self.reader = StreamReader()
        # LOCAL: the next step if it has already arrived (the worker loop's peek), for prefetching its reads
        self.peek_next: Callable[[], Any] = lambda: None
        self.prefetch = os.environ.get("NXPAR_PREFETCH", "1") != "0"
        self._handlers: dict[type, Callable[[Any], Any]] = {
            st.OpenFile: self._open_file,
            st.Tree: self._tree,
            st.WriteBatch: self._write_batch,
            st.Flush: self._flush,
            st.CloseFile: self._close_file,
            st.LocalFile: self._local_file,
            st.MarkFailed: self._mark_failed,
        }

    # -- agreement --------------------------------------------------------------------------
    def _agree(self, error: str, flags: list[int] | None = None) -> list[int]:
        """Collective: StepFailed on every rank if any rank had an error; else the flags' max (agreement.py)."""
        return agree(self.comm, error, flags)

    def execute(self, step: Any) -> Any:
        """COLLECTIVE: apply one step (every writer rank the same step, in the same order); the
        step's result value (a WriteBatch: {stream: ChannelFailure} of the channels not written)."""
        handler = self._handlers.get(type(step))
        if handler is None:
            raise StepFailed(f"unknown step {type(step).__name__}")
        try:
            return self.write_mode.run_step(lambda: handler(step), step)
        except Diverged as e:  # agreed: every rank stops writing to that file alike
            self.files.diverge(getattr(step, "scan_id", ""), str(e))
            raise

    # -- steps -------------------------------------------------------------------------------
    def _open_file(self, step: st.OpenFile) -> None:
        error = ""
        try:
            os.makedirs(os.path.dirname(step.path) or ".", exist_ok=True)
        except OSError as e:
            error = f"Cannot create directory for {step.path}: {e}"
        self._agree(error)
        self.files.open(step)

    def _space_error(self, scan_id: str, need: int, reserve: int = METADATA_MARGIN_BYTES) -> str:
        """'' or why `need` more bytes cannot be written (checked by the first writer rank only).

        A full disk must fail every rank together: with collective metadata writes only the first
        writer rank writes metadata, so an ENOSPC there would leave the others inside a collective.
        """
        if self.comm.rank != 0 or scan_id not in self.files.scan_files:
            return ""
        path = self.files.shared(scan_id).path
        free = free_bytes(os.path.dirname(os.path.abspath(path)))
        if free is None:
            return ""
        if free < need + reserve:
            return (f"No space left on device for {path}: {free / 2**20:.1f} MB free, "
                    f"{(need + reserve) / 2**20:.1f} MB needed")
        return ""

    def _tree(self, step: st.Tree) -> None:
        self._agree(self._space_error(step.scan_id, 0))
        if any(node.op == "delete" for node in step.nodes):  # a kept dataset handle may go stale
            self.datasets.forget(step.scan_id)
            self.write_mode.forget(step.scan_id)
        f = self._file(step.scan_id)
        collectively(self.comm, "writing the tree", lambda: apply_nodes(f, step.nodes))

    def _write_batch(self, step: st.WriteBatch) -> dict[str, str]:
        """Each rank reads its share of every write (one pipelined Redis round trip), all ranks
        agree once (read errors, free space, which Lima2 / Mosca writes could not be read), then
        each dataset is written collectively in turn; {stream: ChannelFailure} of the channels given up.

        A Lima2 / Mosca write that failed on any rank is skipped on every rank (no resize, no
        write), and so are the later writes of its channel in this scan (`given_up`)."""
        f = self._file(step.scan_id)
        given_up = self.given_up.setdefault(step.scan_id, {})
        shares = [share_of_rows(w.start, w.stop, w.spec.rows_per_chunk, self.comm.rank, self.comm.size)
                  if w.source.stream_name not in given_up else (w.start, w.start) for w in step.writes]
        rows = read_and_agree(self.comm, self.reader, step.writes, shares, given_up,
                              lambda: self._space_error(step.scan_id, step.nbytes, SPACE_RESERVE_BYTES),
                              self._prefetch_next)
        for write, (lo, _), raw in zip(step.writes, shares, rows):
            if write.source.stream_name not in given_up:
                self._write_rows(step.scan_id, f, write, lo, raw)
        return {w.source.stream_name: given_up[w.source.stream_name] for w in step.writes
                if w.source.stream_name in given_up}

    def _prefetch_next(self) -> None:
        """LOCAL (no collective): if the next step is already here and writes rows, send this rank's
        Redis reads for it now, so that Redis serves them while this rank writes the current step."""
        try:  # best effort, on this rank only: a failure here must not keep it from the agreement
            step = self.peek_next() if self.prefetch else None
            if isinstance(step, st.WriteBatch) and step.scan_id in self.files.scan_files:
                shares = [share_of_rows(w.start, w.stop, w.spec.rows_per_chunk, self.comm.rank, self.comm.size)
                          for w in step.writes]
                self.reader.prefetch([r[1:] for r in redis_reads(step.writes, shares)])
        except Exception as e:
            log.debug("prefetch skipped: %s", e)

    def _write_rows(self, scan_id: str, f: h5py.File, write: st.WriteRows, lo: int, raw) -> None:
        """COLLECTIVE: create/resize the dataset, then each rank writes its rows."""
        spec = write.spec
        name = write.source.stream_name
        dset = collectively(self.comm, f"{name}: dataset", lambda: self.datasets.get_or_create(scan_id, f, spec))
        self.write_mode.before_change(dset)  # the one writer: its pending chunks of dset stored first
        detector_dims = dset.shape[spec.scan_ndim:]
        rows = raw
        if spec.variable:  # every rank pads to the same, agreed, detector dims
            detector_dims, rows = self._padded_rows(write, raw, detector_dims)
        collectively(self.comm, f"{name}: resizing", lambda: resize_for(dset, spec, write.stop, detector_dims))
        collectively(self.comm, f"{name}: writing rows",
                     lambda: self.write_mode.write_rows(scan_id, spec, dset, lo, rows))

    def _padded_rows(self, write: st.WriteRows, raw, detector_dims: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
        """COLLECTIVE: variable rows padded to the largest detector dims of every rank (agreed)."""
        local = np.array(layout.max_dims(raw, len(detector_dims)) if raw is not None else (0,) * len(detector_dims),
                         dtype=np.int64)
        longest = np.empty_like(local)
        self.comm.Allreduce(local, longest, op=MPI.MAX)
        detector_dims = tuple(int(max(a, b)) for a, b in zip(detector_dims, longest))
        error, rows = "", None
        try:
            rows = layout.as_rows(raw, write.spec, detector_dims) if raw is not None else None
        except Exception as e:
            error = f"{write.source.stream_name}: {type(e).__name__}: {e}"
        self._agree(error)
        return detector_dims, rows

    def _flush(self, step: st.Flush) -> None:
        self.files.flush(step.scan_id, self._space_error(step.scan_id, 0))

    def _close_file(self, step: st.CloseFile) -> None:
        self.given_up.pop(step.scan_id, None)
        self.reader.forget(step.scan_id)
        self.datasets.forget(step.scan_id)
        self.write_mode.forget(step.scan_id)
        self.files.close(step.scan_id)

    def _local_file(self, step: st.LocalFile) -> None:
        """Only the first writer rank touches the (small) master file, with the serial driver."""
        error = ""
        if self.comm.rank == 0:
            try:
                os.makedirs(os.path.dirname(step.path) or ".", exist_ok=True)
                with h5py.File(step.path, "a", locking=False) as f:
                    set_root_attrs(f, step.root_attrs)
                    apply_nodes(f, step.nodes)
            except Exception as e:
                error = f"master file {step.path}: {e}"
        self._agree(error)

    def _mark_failed(self, step: st.MarkFailed) -> None:
        """COLLECTIVE: the unfinished entries of a file a scan cannot finish get FAILED (scan_files.py)."""
        self.files.mark_failed(step)

    def close_all(self) -> None:
        """Collective: close every file still open (service shutdown)."""
        self.write_mode.store_all(sorted(self.files.scan_files))  # the one writer: every chunk stored before files close
        for scan_id in sorted(self.files.scan_files):
            try:
                self._close_file(st.CloseFile(scan_id))
            except StepFailed as e:  # agreed: every rank goes on with the next file (a diverged one is abandoned)
                log.error("scan %s: closed at shutdown: %s", scan_id, e)
        self.write_mode.close()

    # -- helpers -----------------------------------------------------------------------------
    def _file(self, scan_id: str) -> h5py.File:
        return self.files.file(scan_id)
