"""ONE WRITER PROCESS ONLY: rows of a filtered dataset written as pre-compressed whole chunks.

A file that only one process writes (one writer rank, or rank 0 alone) is opened with HDF5's
serial driver (file_access.open_scan_file with serial=True), where H5Dwrite_chunk is allowed. The chunks a row write
covers entirely are encoded on a thread pool (chunk_codec: the dataset's own filter plugins) and
stored with H5Dwrite_chunk; rows of a chunk the write covers only in part (a flush of a partly
filled chunk, or the rest of it later) go through HDF5, which merges them with what is stored.
Compression and storage run one step behind the caller (`submit` / `wait`), overlapping the
next step's Redis reads. The four ways of writing one process's chunks (MPI-IO driver, serial driver
through HDF5, direct on 1 and 2 threads) are measured by `python -m perf write_paths --compression
lz4-bitshuffle` (perf/RESULTS.md).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator

import h5py
import numpy as np

from ...protocol import steps as st
from .chunk_codec import Encoder, encoder_for, keep_freed_buffers

log = logging.getLogger("nxpar.collective")


def compress_threads() -> int:
    """NXPAR_COMPRESS_THREADS, else the cores this process may run on."""
    try:
        return max(int(os.environ.get("NXPAR_COMPRESS_THREADS", "0")), 0) or len(os.sched_getaffinity(0))
    except ValueError:
        return len(os.sched_getaffinity(0))


def direct_rows(start: int, stop: int, rows_per_chunk: int) -> int:
    """First row of [start, stop) from which every chunk along the scan axis starts inside the
    write (== stop: none). Rows before it share a chunk with rows already written: HDF5 merges
    them. A last chunk the write fills only in part is stored padded with the fill value, as
    HDF5 stores it; rows that come later into it are merged by HDF5 like any head rows."""
    first = -(-start // rows_per_chunk) * rows_per_chunk
    return min(first, stop)


def _tiles(detector_shape: tuple[int, ...], detector_chunks: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Origins of the chunks tiling the detector dimensions (C order; one empty origin for scalars)."""
    grids = [range(0, n, c) for n, c in zip(detector_shape, detector_chunks)]
    for index in np.ndindex(*[len(g) for g in grids]):
        yield tuple(g[i] for g, i in zip(grids, index))


class ChunksLost(RuntimeError):
    """Storing compressed chunks of this scan failed (in the background, during an earlier step)."""


class DirectChunkStore:
    """Stores whole chunks of flat-scan datasets, compressing on `threads` threads, one step behind.

    `submit` copies the chunks out of the caller's rows (the row buffer is free again at once) and
    hands their compression and storage to a background thread, so that a writer rank receives the
    next step from Redis while this one is compressed. `wait` returns once everything submitted is
    stored; what went wrong is kept for the scan that submitted it (`take_failure`), which may
    not be the scan of the step that waited. The executor waits before any other step touches the
    file (metadata, resize, rows through HDF5, flush, close): a flush or a close covers every row.
    """

    def __init__(self, threads: int | None = None) -> None:
        keep_freed_buffers()
        self.threads = threads or compress_threads()
        self._pool: ThreadPoolExecutor | None = None
        self._store: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._pending_dset: h5py.Dataset | None = None
        self._pending_owner = ""
        self._failures: dict[str, str] = {}  # scan id -> why storing its chunks failed
        self.encoders: dict[tuple[str, str], Encoder | None] = {}  # (scan id, path); None: HDF5 filters
        self.overlap = os.environ.get("NXPAR_DIRECT_OVERLAP", "1") != "0"  # 0: store before submit returns

    # -- what the executor of one writer process asks ------------------------------------------------
    def run_step(self, call: Callable[[], Any], owner: str | None, waits: bool, closes: bool) -> Any:
        """call()'s result. waits: the chunks submitted so far are stored first, and a scan whose
        chunks were lost fails before the step writes anything (a close closes all the same).
        Raises ChunksLost when this step's scan lost chunks (with the step's own error, if any)."""
        failure = None
        if waits:
            self.wait()
            failure = self.take_failure(owner)
            if failure and not closes:
                raise ChunksLost(failure)
        try:
            result = call()
        except Exception as e:
            late = failure or self.take_failure(owner)
            if late:
                raise ChunksLost(f"{late}; {e}") from e
            raise
        late = failure or self.take_failure(owner)
        if late:
            raise ChunksLost(late)
        return result

    def store_rows(self, scan_id: str, spec: st.ArraySpec, dset: h5py.Dataset, lo: int, rows: np.ndarray) -> np.ndarray:
        """Submit the whole chunks of rows [lo, lo + len(rows)) of a flat scan; the rows left for HDF5
        (before the first chunk boundary, or all of them: grid scans, variable rows, other filters)."""
        encoder = self._encoder(scan_id, spec, dset)
        if encoder is None:
            return rows
        first = direct_rows(lo, lo + len(rows), encoder.chunk_shape[0])
        if first < lo + len(rows):
            self.submit(scan_id, dset, encoder, first, rows[first - lo:])
        return rows[:first - lo]

    def _encoder(self, scan_id: str, spec: st.ArraySpec, dset: h5py.Dataset) -> Encoder | None:
        if spec.scan_ndim != 1 or spec.variable:
            return None
        key = (scan_id, spec.path)
        if key not in self.encoders:
            self.encoders[key] = encoder_for(dset)
        return self.encoders[key]

    def forget(self, scan_id: str) -> None:
        """The scan's datasets are closed or deleted: their encoders go."""
        self.encoders = {k: e for k, e in self.encoders.items() if k[0] != scan_id}

    def store_all(self, scan_ids: list[str]) -> None:
        """Shutdown: every chunk stored before the files close; what was lost is logged per scan."""
        self.wait()
        for scan_id in scan_ids:
            failure = self.take_failure(scan_id)
            if failure:
                log.error("scan %s: closed at shutdown, incomplete: %s", scan_id, failure)

    # -- the pipeline ---------------------------------------------------------------------------------
    def submit(self, owner: str, dset: h5py.Dataset, encoder: Encoder, start: int, rows: np.ndarray) -> None:
        """Rows [start, start + len(rows)) of `dset` (already resized), every one in a chunk they
        fill, for scan `owner`."""
        chunks = encoder.chunk_shape
        origins = [(r,) + tile for r in range(0, len(rows), chunks[0]) for tile in _tiles(rows.shape[1:], chunks[1:])]
        if not origins:  # no rows, or a detector dimension of 0
            return
        loaded: list[Any] = []
        try:
            for origin in origins:
                block = rows[tuple(slice(o, o + c) for o, c in zip(origin, chunks))]
                if block.shape != chunks:  # an edge chunk: stored full size, padded with the fill value
                    padded = np.full(chunks, dset.fillvalue, dtype=dset.dtype)
                    padded[tuple(slice(0, n) for n in block.shape)] = block
                    block = padded
                loaded.append(encoder.load(block))
        except BaseException:
            for ptr in loaded:
                encoder.drop(ptr)
            raise
        self.wait()
        offsets = [(start + o[0],) + o[1:] for o in origins]
        if self._store is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="nxpar-compress")
            self._store = ThreadPoolExecutor(1, thread_name_prefix="nxpar-store")
        self._pending = self._store.submit(self._compress_and_store, dset, encoder, offsets, loaded)
        self._pending_dset, self._pending_owner = dset, owner
        if not self.overlap:
            self.wait()

    def _compress_and_store(self, dset: h5py.Dataset, encoder: Encoder, offsets: list[tuple[int, ...]],
                            loaded: list[Any]) -> None:
        """BACKGROUND: every loaded chunk is encoded (and freed) even if one fails or storing fails.
        One task per thread, each a run of consecutive chunks: a wake-up per chunk costs more CPU
        than it saves on 2 cores."""
        size = -(-len(loaded) // self.threads)
        runs = [loaded[i:i + size] for i in range(0, len(loaded), size)]
        loaded.clear()  # each run holds its chunks, and lets each go once encoded
        encoded = [self._pool.submit(self._encode_run, encoder, run) for run in runs]
        try:
            stored = 0
            for future in encoded:
                for data in future.result():
                    dset.id.write_direct_chunk(offsets[stored], data)
                    stored += 1
        finally:
            for future in encoded:
                future.exception()  # every buffer is freed by its own task: wait for all of them

    @staticmethod
    def _encode_run(encoder: Encoder, run: list[Any]) -> list[Any]:
        """Encode (and free) every chunk of a run, whatever fails: the first failure is raised."""
        out, failure = [], None
        for i, loaded in enumerate(run):
            run[i] = None  # the raw chunk goes as soon as it is encoded
            try:
                out.append(encoder.encode_loaded(loaded))
            except Exception as e:
                failure = failure or e
            del loaded
        if failure is not None:
            raise failure
        return out

    def wait_for(self, dset: h5py.Dataset) -> None:
        """`wait`, if chunks of `dset` are pending (before it is resized or written through HDF5)."""
        if self._pending is not None and self._pending_dset is not None and self._pending_dset.id == dset.id:
            self.wait()

    def wait(self) -> None:
        """Until every chunk submitted is stored (a failure is kept for its scan)."""
        if self._pending is None:
            return
        try:
            self._pending.result()
        except Exception as e:
            log.warning("scan %s: storing compressed chunks failed", self._pending_owner, exc_info=True)
            self._failures.setdefault(self._pending_owner, f"storing compressed chunks failed: "
                                                           f"{type(e).__name__}: {e}")
        self._pending, self._pending_dset = None, None  # after result(): an interrupted wait waits again

    def take_failure(self, owner: str | None) -> str | None:
        """Why storing chunks of scan `owner` failed, once (None: nothing failed)."""
        return self._failures.pop(owner, None) if owner is not None else None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            for pool in (self._store, self._pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._pool = self._store = None
