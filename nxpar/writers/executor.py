"""ALL WRITER RANKS: execute steps collectively on the scan files.

Every public method here is collective over `comm` (the writer communicator): each writer rank
must call it with the same step, in the same order. Work that can fail on one rank only
(reading Redis, creating directories) happens first and is followed by an agreement
(`_agree`), so that no rank enters a collective HDF5 call that another rank skips. A WriteBatch
whose Lima2 / Mosca rows cannot be read skips those writes on every rank and says which in its
result (`share_reads.py`): the scan goes on without that channel.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import h5py
import numpy as np
from mpi4py import MPI

from ..protocol import steps as st
from ..protocol.mpi_roles import sleepy_allreduce_max_all
from ..sources.redis_reader import StreamReader
from ..util.disk import free_bytes
from . import layout
from .direct.chunk_writer import ChunksLost, DirectChunkStore
from .file_access import open_scan_file
from .filters import filter_kwargs
from .share_reads import agreed_failures, failure_flags, read_shares, redis_reads
from .tree import apply_nodes, library_versions, set_root_attrs

log = logging.getLogger("nxpar.collective")


class StepFailed(RuntimeError):
    """A step failed on at least one writer rank; all ranks raise it together."""


# Free space kept in reserve: metadata (flushes, the final status, closing) must still fit.
SPACE_RESERVE_BYTES = 4 << 20


def share_of_rows(start: int, stop: int, chunk_rows: int, rank: int, size: int) -> tuple[int, int]:
    """This rank's contiguous rows of [start, stop): whole chunks only, so one rank owns each chunk."""
    if stop <= start:
        return start, start
    first_chunk, last_chunk = start // chunk_rows, (stop - 1) // chunk_rows
    nchunks = last_chunk - first_chunk + 1
    base, extra = divmod(nchunks, size)
    lo = first_chunk + rank * base + min(rank, extra)
    hi = lo + base + (1 if rank < extra else 0)
    if hi <= lo:
        return start, start
    return max(start, lo * chunk_rows), min(stop, hi * chunk_rows)


def _needs_collective(spec: st.ArraySpec, dset: h5py.Dataset) -> bool:
    """Filtered datasets need collective transfers. Unfiltered ones too, unless a chunk is exactly
    one row: independent writes of a row slab into multi-row or tiled chunks go piece by piece
    through MPI-IO (measured 1 rank, 1024² uint16, chunks (8,256,256): 425 MB/s independent,
    2 891 MB/s collective; one-frame chunks: 3 596 independent, 2 295 collective)."""
    if spec.compression != "none" or dset.chunks is None:
        return spec.compression != "none"
    nscan = spec.scan_ndim
    return any(c != 1 for c in dset.chunks[:nscan]) or tuple(dset.chunks[nscan:]) != tuple(dset.shape[nscan:])


@dataclass
class SharedFile:
    """One open handle per path: consecutive scans of a dataset often overlap in the same file."""

    file: h5py.File
    path: str
    users: int = 0


class StepExecutor:
    """Holds the open scan files of this rank and applies steps to them."""

    def __init__(self, comm: MPI.Intracomm) -> None:
        self.comm = comm
        self.open_files: dict[str, SharedFile] = {}  # real path -> handle
        self.scan_files: dict[str, str] = {}  # scan id -> real path
        self.datasets: dict[tuple[str, str], h5py.Dataset] = {}  # (scan id, path) -> open row dataset
        # one writer process (comm of size 1): files use the serial driver, whole chunks are stored
        # pre-compressed (direct/chunk_writer.py)
        # (NXPAR_SERIAL_DRIVER=0: the mpio driver even then, e.g. to compare)
        self.serial = comm.size == 1 and os.environ.get("NXPAR_SERIAL_DRIVER", "1") != "0"
        self.direct = DirectChunkStore() if self.serial else None
        # scan id -> {stream: reason}: Lima2 / Mosca channels whose rows could not be read (agreed:
        # the same on every rank); their later writes in the scan are skipped too
        self.given_up: dict[str, dict[str, str]] = {}
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
        """Collective: raise StepFailed on every rank if any rank had an error; else the max over
        the ranks of each of `flags` (the same length on every rank), in the same reduction."""
        agreed = sleepy_allreduce_max_all(self.comm, [1 if error else 0] + list(flags or []))
        if not agreed[0]:
            return agreed[1:]
        errors = self.comm.allgather(error)
        failed = [f"rank {r}: {e}" for r, e in enumerate(errors) if e]
        if failed:
            raise StepFailed("; ".join(failed) if len(set(errors) - {""}) > 1 else
                             next(e for e in errors if e))
        return agreed[1:]

    def execute(self, step: Any) -> Any:
        """COLLECTIVE: apply one step (every writer rank the same step, in the same order); the
        step's result value (a WriteBatch: {stream: reason} of the channels not written)."""
        handler = self._handlers.get(type(step))
        if handler is None:
            raise StepFailed(f"unknown step {type(step).__name__}")
        if self.direct is None:
            return handler(step)
        try:  # the previous step's chunks stored first, unless this is a row write; lost ones fault their scan
            return self.direct.run_step(lambda: handler(step), getattr(step, "scan_id", None),
                                        waits=not isinstance(step, st.WriteBatch), closes=isinstance(step, st.CloseFile))
        except ChunksLost as e:
            raise StepFailed(str(e)) from e

    # -- steps -------------------------------------------------------------------------------
    def _open_file(self, step: st.OpenFile) -> None:
        error = ""
        try:
            os.makedirs(os.path.dirname(step.path) or ".", exist_ok=True)
        except OSError as e:
            error = f"Cannot create directory for {step.path}: {e}"
        self._agree(error)
        if step.scan_id in self.scan_files:
            raise StepFailed(f"scan {step.scan_id} already has an open file")
        key = os.path.realpath(step.path)
        shared = self.open_files.get(key)
        if shared is None:
            try:
                shared = SharedFile(open_scan_file(step.path, self.comm, self.serial), step.path)
            except Exception as e:  # all ranks fail together: open is collective
                raise StepFailed(f"Cannot open {step.path}: {e}") from e
        try:
            existing = [name for name in step.entries if name in shared.file]
            if existing:
                raise StepFailed(f"Scan {existing[0]} already exists in {step.path}")
            set_root_attrs(shared.file, {**step.root_attrs, **library_versions()})
        except Exception:
            if shared.users == 0:
                shared.file.close()
            raise
        shared.users += 1
        self.open_files[key] = shared
        self.scan_files[step.scan_id] = key

    def _space_error(self, scan_id: str, need: int) -> str:
        """'' or why `need` more bytes cannot be written (checked by the first writer rank only).

        A full disk must fail every rank together: with collective metadata writes only the first
        writer rank writes metadata, so an ENOSPC there would leave the others inside a collective.
        """
        if self.comm.rank != 0 or scan_id not in self.scan_files:
            return ""
        path = self.open_files[self.scan_files[scan_id]].path
        free = free_bytes(os.path.dirname(os.path.abspath(path)))
        if free is None:
            return ""
        if free < need + SPACE_RESERVE_BYTES:
            return (f"No space left on device for {path}: {free / 2**20:.1f} MB free, "
                    f"{(need + SPACE_RESERVE_BYTES) / 2**20:.1f} MB needed")
        return ""

    def _tree(self, step: st.Tree) -> None:
        self._agree(self._space_error(step.scan_id, 0))
        if any(node.op == "delete" for node in step.nodes):  # a kept dataset handle may go stale
            self.datasets = {k: d for k, d in self.datasets.items() if k[0] != step.scan_id}
            if self.direct is not None:
                self.direct.forget(step.scan_id)
        apply_nodes(self._file(step.scan_id), step.nodes)

    def _write_batch(self, step: st.WriteBatch) -> dict[str, str]:
        """Each rank reads its share of every write (one pipelined Redis round trip), all ranks
        agree once (read errors, free space, which Lima2 / Mosca writes could not be read), then
        each dataset is written collectively in turn; {stream: reason} of the channels given up.

        A Lima2 / Mosca write that failed on any rank is skipped on every rank (no resize, no
        write), and so are the later writes of its channel in this scan (`given_up`)."""
        f = self._file(step.scan_id)
        given_up = self.given_up.setdefault(step.scan_id, {})
        shares = [share_of_rows(w.start, w.stop, w.spec.rows_per_chunk, self.comm.rank, self.comm.size)
                  if w.source.stream_name not in given_up else (w.start, w.start) for w in step.writes]
        error, rows, failed = "", [None] * len(step.writes), {}
        try:
            rows, failed = read_shares(self.reader, step.writes, shares)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        self._prefetch_next()
        flags = self._agree(error or self._space_error(step.scan_id, step.nbytes),
                            failure_flags(failed, len(step.writes)))
        for i, reason in agreed_failures(self.comm, failed, flags).items():
            given_up.setdefault(step.writes[i].source.stream_name, reason)
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
            if isinstance(step, st.WriteBatch) and step.scan_id in self.scan_files:
                shares = [share_of_rows(w.start, w.stop, w.spec.rows_per_chunk, self.comm.rank, self.comm.size)
                          for w in step.writes]
                self.reader.prefetch([r[1:] for r in redis_reads(step.writes, shares)])
        except Exception as e:
            log.debug("prefetch skipped: %s", e)

    def _write_rows(self, scan_id: str, f: h5py.File, write: st.WriteRows, lo: int, raw) -> None:
        """COLLECTIVE: create/resize the dataset, then each rank writes its rows."""
        spec = write.spec
        dset = self._dataset(scan_id, f, spec)
        if self.direct is not None:
            self.direct.wait_for(dset)  # its chunks of the previous step stored before it changes
        nscan = spec.scan_ndim
        detector_dims = dset.shape[nscan:]
        if spec.variable:  # every rank pads to the same, agreed, detector dims
            local = np.array(layout.max_dims(raw, len(detector_dims)) if raw is not None else (0,) * len(detector_dims),
                             dtype=np.int64)
            longest = np.empty_like(local)
            self.comm.Allreduce(local, longest, op=MPI.MAX)
            detector_dims = tuple(int(max(a, b)) for a, b in zip(detector_dims, longest))
            error, rows = "", None
            try:
                rows = layout.as_rows(raw, spec, detector_dims) if raw is not None else None
            except Exception as e:
                error = f"{write.source.stream_name}: {type(e).__name__}: {e}"
            self._agree(error)
        else:
            rows = raw
        shape = layout.scan_extent(spec, dset.shape[:nscan], write.stop) + tuple(detector_dims)
        if dset.shape != shape:
            dset.resize(shape)
        if self.direct is not None and rows is not None and len(rows):  # whole chunks pre-compressed
            rows = self.direct.store_rows(scan_id, spec, dset, lo, rows)  # the rest through HDF5
        self._write_selection(dset, nscan, lo, rows, collective=_needs_collective(spec, dset), mpio=not self.serial)

    def _dataset(self, scan_id: str, f: h5py.File, spec: st.ArraySpec) -> h5py.Dataset:
        """Open datasets are kept per scan: a lookup is a collective metadata read."""
        key = (scan_id, spec.path)
        dset = self.datasets.get(key)
        if dset is None:
            dset = f.get(spec.path)
            if dset is None:
                dset = self._create_array(f, spec)
            self.datasets[key] = dset
        return dset

    def _flush(self, step: st.Flush) -> None:
        self._agree(self._space_error(step.scan_id, 0))
        self._flush_to_disk(self._file(step.scan_id))

    def _flush_to_disk(self, f: h5py.File) -> None:
        f.flush()
        if self.serial:  # as MPI_File_sync does behind the mpio driver's flush: flushed data is on disk
            os.fsync(f.id.get_vfd_handle())

    def _close_file(self, step: st.CloseFile) -> None:
        key = self.scan_files.pop(step.scan_id, None)
        self.given_up.pop(step.scan_id, None)
        self.reader.forget(step.scan_id)
        self.datasets = {k: d for k, d in self.datasets.items() if k[0] != step.scan_id}
        if self.direct is not None:
            self.direct.forget(step.scan_id)
        if key is None:
            return
        shared = self.open_files[key]
        shared.users -= 1
        if shared.users > 0:
            self._flush_to_disk(shared.file)  # another scan still writes to it
        else:
            del self.open_files[key]
            shared.file.close()

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
        """COLLECTIVE: mark the unfinished entries of a file a dead job left behind."""
        if not os.path.exists(step.path):
            return
        if os.path.realpath(step.path) in self.open_files:
            raise StepFailed(f"{step.path} is open for writing")
        try:
            f = open_scan_file(step.path, self.comm, self.serial)
        except Exception as e:
            raise StepFailed(f"{step.path} cannot be opened after the crash: {e}") from e
        try:
            for entry in step.entries:
                status = f.get(f"{entry}/writer/status")
                if status is not None and status[()] not in (b"SUCCEEDED", b"FAILED"):
                    apply_nodes(f, [st.Node(st.NodeOp.VALUE, f"/{entry}/writer/status", "FAILED", overwrite=True),
                                    st.Node(st.NodeOp.VALUE, f"/{entry}/writer/failure", step.reason, overwrite=True)])
        finally:
            f.close()

    def close_all(self) -> None:
        """Collective: close every file still open (service shutdown)."""
        if self.direct is not None:  # every chunk stored before any file closes
            self.direct.store_all(sorted(self.scan_files))
        for scan_id in sorted(self.scan_files):
            self._close_file(st.CloseFile(scan_id))
        if self.direct is not None:
            self.direct.close()

    # -- helpers -----------------------------------------------------------------------------
    def _file(self, scan_id: str) -> h5py.File:
        try:
            return self.open_files[self.scan_files[scan_id]].file
        except KeyError:
            raise StepFailed(f"no open file for scan {scan_id}") from None

    @staticmethod
    def _create_array(f: h5py.File, spec: st.ArraySpec) -> h5py.Dataset:
        shape = layout.initial_shape(spec)
        dset = f.create_dataset(
            spec.path, shape=shape, maxshape=(None,) * len(shape), dtype=np.dtype(spec.dtype),
            chunks=tuple(spec.chunks), fillvalue=spec.fillvalue, **filter_kwargs(spec.compression))
        for k, v in spec.attrs.items():
            dset.attrs[k] = v
        return dset

    @staticmethod
    def _write_selection(dset: h5py.Dataset, nscan: int, start: int, rows: np.ndarray | None,
                         collective: bool = True, mpio: bool = True) -> None:
        """Raw-data write, each rank its rows (or an empty selection).

        Filtered datasets need collective transfers (parallel HDF5 ≥ 1.10.2); unfiltered ones with
        one-row chunks are written independently (`_needs_collective`).
        Rows are consecutive scan points: one slab for flat scans, a few for grid scans.
        mpio False: a serial file (one writer process), where an empty write has nobody to meet.
        """
        if not mpio and (rows is None or not len(rows)):
            return
        dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
        if mpio:
            dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE if collective else h5py.h5fd.MPIO_INDEPENDENT)
        fspace = dset.id.get_space()
        detector_dims = tuple(dset.shape[nscan:])
        if rows is not None and len(rows):
            fspace.select_none()
            for slab_start, slab_count in layout.runs(start, start + len(rows), dset.shape[:nscan]):
                fspace.select_hyperslab(slab_start + (0,) * len(detector_dims), slab_count + detector_dims,
                                        op=h5py.h5s.SELECT_OR)
            mspace = h5py.h5s.create_simple(rows.shape)
            buf = rows
        else:
            fspace.select_none()
            mspace = h5py.h5s.create_simple((1,) + detector_dims)
            mspace.select_none()
            buf = np.zeros((1,) + detector_dims, dtype=dset.dtype)
        dset.id.write(mspace, fspace, buf, dxpl=dxpl)
