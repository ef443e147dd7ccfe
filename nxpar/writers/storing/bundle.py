"""ALL WRITER RANKS (storing path): what one rank makes of its share of a WriteBatch — its chunks encoded
on a thread pool, in parts, and the rows it cannot encode — for the storing rank to store.

The chunks from the first chunk boundary of a share on are encoded (a last chunk the share fills only
in part padded with the fill value, as HDF5 stores it); the rows before, which share a chunk with rows
written earlier, go raw, for HDF5 to merge. A padded chunk that an optional filter skipped (Blosc's
incompressible chunk: a filter mask HDF5 1.10.8 loses when it merges later rows) goes raw too. Encoding
copies each chunk out of the rows first (`Encoder.load`: HDF5's filters take a buffer they may
replace), edge tiles padded, one run of consecutive chunks (about RUN_BYTES) per task, so that the
parts reach the storing rank while the rest is encoded. An error is kept, so that a rank whose
encoding failed still ends its parts (the storing rank waits for every rank's last part).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ...protocol import steps as st
from .. import layout
from .plan import BatchPlan, WritePlan, encoder_of
from .shares import Share, direct_rows

RUN_BYTES = 4 << 20  # raw bytes of chunks per encoding task (one part sent to the storing rank)


@dataclass
class EncodedChunk:
    write: int  # index of the write in the batch
    offset: tuple[int, ...]  # the chunk's origin in the dataset
    mask: int  # filters skipped (HDF5's filter mask)
    data: Any  # the stored bytes (any buffer)


@dataclass
class RawRows:
    write: int
    first: int  # scan point of rows[0]
    rows: np.ndarray


@dataclass
class Part:
    """What a rank sends at a time. Its last part of a batch also carries its error, if any, and what
    the batch cost it (CPU seconds, bytes of its rows: the storing rank balances the shares with them)."""

    chunks: list[EncodedChunk] = field(default_factory=list)
    raw: list[RawRows] = field(default_factory=list)
    error: str = ""
    last: bool = False
    cpu_s: float = 0.0
    nbytes: int = 0


def compress_threads(writers: int) -> int:
    """NXPAR_COMPRESS_THREADS, else this process's cores shared among the writer ranks (at least 1)."""
    try:
        asked = int(os.environ.get("NXPAR_COMPRESS_THREADS", "0"))
    except ValueError:
        asked = 0
    return asked if asked > 0 else max(len(os.sched_getaffinity(0)) // max(writers, 1), 1)


def _tiles(detector_shape: tuple[int, ...], detector_chunks: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Origins of the chunks tiling the detector dimensions (C order; one empty origin for scalars)."""
    grids = [range(0, n, c) for n, c in zip(detector_shape, detector_chunks)]
    for index in np.ndindex(*[len(g) for g in grids]):
        yield tuple(g[i] for g, i in zip(grids, index))


@dataclass
class ChunkTask:
    write: int
    offset: tuple[int, ...]
    block: np.ndarray  # a view of the rows
    plan: WritePlan
    tail: np.ndarray | None = None  # a padded last chunk row: all its rows (all its tiles in one run)


def _encode_run(run: list[ChunkTask]) -> Part:
    """Encode a run of chunks (edge ones padded), one after the other: each copy freed once encoded. A
    padded last chunk row an optional filter skipped (Blosc's incompressible chunk) goes raw instead."""
    part, skipped = Part(), None
    for task in run:
        pipeline = task.plan.pipeline
        encoder = encoder_of(pipeline)
        block = task.block
        if block.shape != pipeline.chunks:  # an edge chunk: stored full size, padded with the fill value
            block = np.full(pipeline.chunks, pipeline.fillvalue, dtype=block.dtype)
            block[tuple(slice(0, n) for n in task.block.shape)] = task.block
        data, mask = encoder.encode_masked(encoder.load(block))
        part.chunks.append(EncodedChunk(task.write, task.offset, mask, data))
        if mask and task.tail is not None:  # HDF5 1.10.8 loses the mask when it merges later rows into it
            skipped = task
    if skipped is not None:
        part.chunks = [c for c in part.chunks if (c.write, c.offset[0]) != (skipped.write, skipped.offset[0])]
        part.raw.append(RawRows(skipped.write, skipped.offset[0], skipped.tail))
    return part


def split_share(plan: WritePlan, write: int, share: Share, rows: Any) -> tuple[list[list[ChunkTask]], list[RawRows]]:
    """LOCAL: this rank's part of a write, its rows [share.lo, share.hi) read: runs of the chunks it
    encodes (a padded last chunk row in a run of its own), the rows that go raw."""
    lo, hi = share.lo, share.lo + len(rows)
    if plan.pipeline is None:
        raw_lo, raw_hi = share.raw_rows()
        return [], [RawRows(write, raw_lo, rows[raw_lo - lo:raw_hi - lo])] if raw_hi > raw_lo else []
    chunks = plan.pipeline.chunks
    first = direct_rows(lo, hi, chunks[0])
    whole, runs = first + (hi - first) // chunks[0] * chunks[0], []
    for a, b in ((first, whole), (whole, hi)):
        tail = rows[a - lo:] if b == hi and hi > whole else None
        run = [ChunkTask(write, (r,) + tile, rows[(slice(r - lo, r - lo + chunks[0]),) +
                                                  tuple(slice(t, t + c) for t, c in zip(tile, chunks[1:]))], plan, tail)
               for r in range(a, b, chunks[0]) for i, tile in enumerate(_tiles(rows.shape[1:], chunks[1:]))
               if share.encodes(r // chunks[0], i if share.tiles > 1 else 0)]
        runs += [run] if run else []
    return runs, [RawRows(write, lo, rows[:first - lo])] if first > lo else []


def _cut(run: list[ChunkTask]) -> list[list[ChunkTask]]:
    """A run of whole chunks cut in runs of about RUN_BYTES (a padded last chunk row stays whole)."""
    if run and run[0].tail is not None:
        return [run]
    runs: list[list[ChunkTask]] = []
    size = 0
    for task in run:
        if not runs or size >= RUN_BYTES:
            runs.append([])
            size = 0
        runs[-1].append(task)
        size += task.block.nbytes
    return runs


class Encoding:
    """LOCAL: one rank's share of a batch being encoded: `parts` complete in order; `last` ends it."""

    def __init__(self, parts: list[Future], raw: list[RawRows], error: str = "") -> None:
        self.parts, self.raw, self.error = parts, raw, error

    def last(self, cpu_since: float, nbytes: int, error: str = "") -> Part:
        """The last part: the raw rows, the error (then no rows), the batch's cost to this rank: CPU
        seconds since `cpu_since` (time.process_time()), `nbytes` of rows."""
        error = error or self.error
        return Part(raw=[] if error else self.raw, error=error, last=True,
                    cpu_s=time.process_time() - cpu_since, nbytes=nbytes)


def start_encoding(pool: ThreadPoolExecutor, plan: BatchPlan, writes: list[st.WriteRows],
                   shares: list[Share], rows: list) -> Encoding:
    """LOCAL: this rank's part of a batch, its chunks encoding on `pool`, a task per run of chunks."""
    runs: list[list[ChunkTask]] = []
    raw: list[RawRows] = []
    try:
        for i, (write_plan, share, share_rows) in enumerate(zip(plan.writes, shares, rows)):
            if write_plan is None or share.hi <= share.lo or share_rows is None:
                continue
            if write_plan.detector_dims is not None:  # variable rows padded to the agreed dims
                share_rows = layout.as_rows(share_rows, writes[i].spec, write_plan.detector_dims)
            more_runs, more_raw = split_share(write_plan, i, share, share_rows)
            runs += [cut for run in more_runs for cut in _cut(run)]
            raw += more_raw
    except Exception as e:
        return Encoding([], [], f"{type(e).__name__}: {e}")
    return Encoding([pool.submit(_encode_run, run) for run in runs], raw)
