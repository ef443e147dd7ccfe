"""ALL WRITER RANKS (storing path): which rows of a write each rank reads, compresses and sends.

Shares are whole chunks along the scan axis, contiguous, in rank order, so that each chunk has one
owner. The storing rank also stores every other rank's chunks, so it takes a weight of an even share
(1: even, 0: none), one per compression scheme (what storing costs against compressing differs by
scheme): NXPAR_STORING_SHARE fixes it, else the storing rank balances it (`ShareSplit.balanced`) from
what each batch cost every rank (CPU seconds, chunks encoded), so that all finish a batch together, and
sends it in its plan. A write often has only a few chunk rows per rank (a 1024² frame chunk row is 16
MiB, a step's worth), too few to cut a fraction of one: the storing rank's count is rounded, and what
rounding gave or took is carried to the next writes (`carry`), so that over a scan it gets its weight.
The carry and the weights change only with the steps and plans every rank sees, in the same order, so
every rank computes the same split. Pure logic: no MPI, no HDF5.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

DEFAULT_STORING_SHARE = 0.8  # where balancing starts (measured: perf/SCALING.md)
SMOOTHING = 0.5  # how far one batch moves the weight towards the balance it measured
MIN_CHANGE = 0.02  # smaller moves are not made (a new weight re-cuts the shares of a prefetched step)


def fixed_share_from_env() -> float | None:
    """NXPAR_STORING_SHARE (0..1) if set: a fixed weight; None: the storing rank adapts it."""
    text = os.environ.get("NXPAR_STORING_SHARE", "").strip()
    try:
        return min(max(float(text), 0.0), 1.0) if text else None
    except ValueError:
        return None


@dataclass
class BatchCost:
    """What a batch cost one rank: process CPU seconds (reading, encoding, sending or storing), chunks encoded."""

    cpu_s: float
    chunks: int


@dataclass
class ShareSplit:
    """The split of each write's chunks among `ranks` writer ranks, the storing rank (0) weighted."""

    ranks: int
    fixed: float | None = None  # NXPAR_STORING_SHARE: the weight of every scheme, never balanced
    weights: dict[str, float] = field(default_factory=dict)  # scheme -> the storing rank's weight
    carry: float = 0.0  # chunks the storing rank was given less (+) or more (-) than its weight, so far

    def weight(self, scheme: str) -> float:
        return self.fixed if self.fixed is not None else self.weights.get(scheme, DEFAULT_STORING_SHARE)

    def balanced(self, scheme: str, storing: BatchCost, others: list[BatchCost]) -> float | None:
        """STORING RANK: the weight that would have let it finish the batch with the others (smoothed), or
        None to keep the current one (fixed, too little work to tell, a move below MIN_CHANGE)."""
        done = [c for c in others if c.chunks > 0 and c.cpu_s > 0]
        if self.fixed is not None or not done:
            return None
        cpu = sum(c.cpu_s for c in done) / len(done)
        per_chunk = cpu / (sum(c.chunks for c in done) / len(done))
        overhead = storing.cpu_s - per_chunk * storing.chunks  # storing the others' chunks, the file's HDF5
        current = self.weight(scheme)
        target = min(max(1.0 - overhead / cpu, 0.0), 1.0)
        new = round(current + SMOOTHING * (target - current), 3)
        return new if abs(new - current) >= MIN_CHANGE else None

    def cuts(self, nchunks: int, carry: float, storing: float) -> tuple[list[int], float]:
        """(chunk index where each rank's share starts, and the end; the carry after this write)."""
        if self.ranks == 1:
            return [0, nchunks], carry
        ideal = nchunks * storing / (storing + self.ranks - 1) + carry
        mine = min(max(math.floor(ideal + 0.5), 0), nchunks)
        rest = nchunks - mine
        others = [mine + round(rest * k / (self.ranks - 1)) for k in range(self.ranks - 1)]
        return [0] + others + [nchunks], ideal - mine

    def shares(self, extents: list[tuple[int, int, int] | None], scheme: str, rank: int
               ) -> tuple[list[tuple[int, int]], float]:
        """(rank `rank`'s rows of each write, the carry after them) — nothing is changed: the caller
        keeps the carry once the shares are taken (`carry = ...`). extents: (start, stop, chunk rows)
        of each write, None for a write nobody writes (rows [0, 0)); scheme: the batch's (`batch_scheme`)."""
        carry, out, storing = self.carry, [], self.weight(scheme)
        for extent in extents:
            if extent is None or extent[1] <= extent[0]:
                out.append((extent[0], extent[0]) if extent else (0, 0))
                continue
            start, stop, chunk_rows = extent
            first_chunk = start // chunk_rows
            cuts, carry = self.cuts((stop - 1) // chunk_rows - first_chunk + 1, carry, storing)
            lo, hi = first_chunk + cuts[rank], first_chunk + cuts[rank + 1]
            out.append((max(start, lo * chunk_rows), min(stop, hi * chunk_rows)) if hi > lo else (start, start))
        return out, carry


def batch_scheme(specs_and_rows: list[tuple[str, int]]) -> str:
    """The scheme a batch is balanced by: its biggest write's ((scheme, bytes) of each write)."""
    return max(specs_and_rows, key=lambda item: item[1])[0] if specs_and_rows else ""


def direct_rows(lo: int, hi: int, chunk_rows: int) -> int:
    """First row of [lo, hi) from which every chunk along the scan axis starts inside the share (== hi:
    none). Rows before it share a chunk with rows written before: they go through HDF5 on the storing
    rank, which merges them. A last chunk the share fills only in part is encoded padded with the fill
    value, as HDF5 stores it, and the rows that come later into it are merged by HDF5 like any head rows."""
    return min(-(-lo // chunk_rows) * chunk_rows, hi)
