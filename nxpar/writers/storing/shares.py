"""ALL WRITER RANKS (storing path): which rows of a write each rank reads, compresses and sends.

Shares are whole chunks, in chunk id order (chunk rows along the scan axis, and the tiles of each chunk
row in C order), contiguous, in rank order, so that each chunk has one owner: a chunk row of big frames
(a 512² frame chunked (32, 128, 128): a chunk row of 32 frames is 16 MiB in 16 tiles) is shared by several ranks, each reading the
rows of the chunk rows it has tiles in. The rows before a write's first chunk boundary (they share a
chunk with rows written earlier: HDF5 merges them) are the storing rank's. The storing rank also
stores every other rank's chunks, and the ranks meet at every step, so a step lasts as long as its
slowest rank: the storing rank takes fewer chunks of a batch's biggest write when storing costs it more
than they would (`storing_chunks`): it keeps an even share unless storing costs it more than one chunk.
The others share the rest evenly; the batch's other writes are split evenly.

What storing costs the storing rank (`overhead`: in bytes of rows the others compress in that CPU time)
is measured by the storing rank from each batch (`ShareSplit.balanced`: every rank's CPU seconds and
bytes compressed), per compression scheme, and sent with its plan, so that every rank takes it at the
same step and computes the same split. NXPAR_STORING_SHARE fixes the storing rank's share instead (0..1
of an even share). Pure logic: no MPI, no HDF5.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

SMOOTHING = 0.5  # how far one batch moves the overhead towards what it measured
MIN_CHANGE = 0.05  # smaller moves (a fraction of a chunk row of the batch) are not sent


def fixed_share_from_env() -> float | None:
    """NXPAR_STORING_SHARE (0..1 of an even share) if set; None: the storing rank balances it."""
    text = os.environ.get("NXPAR_STORING_SHARE", "").strip()
    try:
        return min(max(float(text), 0.0), 1.0) if text else None
    except ValueError:
        return None


def storing_chunks(nrows: int, ranks: int, overhead_rows: float) -> int:
    """The storing rank's chunks of a write of `nrows` chunks: the count that ends the step soonest when
    storing costs it `overhead_rows` chunks' worth of work and the others share the rest evenly (the
    largest such count)."""
    if ranks == 1 or nrows == 0:
        return nrows

    def step(mine: int) -> float:
        return max(mine + overhead_rows, math.ceil((nrows - mine) / (ranks - 1)))

    best = (nrows - overhead_rows * (ranks - 1)) / ranks  # where the two sides meet, continuous
    candidates = {0, nrows} | {min(max(math.floor(best) + d, 0), nrows) for d in (-1, 0, 1, 2)}
    return min(candidates, key=lambda mine: (step(mine), -mine))


@dataclass(frozen=True)
class Share:
    """One rank's part of one write: the rows it reads, [lo, hi), and the chunks it encodes, [first,
    stop) by chunk id (chunk row along the scan axis × `tiles` + the tile, C order over the detector
    tiles). Neighbours may read the same chunk row when they share its tiles; rows that go raw (no
    pipeline) are sent by the rank holding their chunk row's first tile (`owns_row`)."""

    lo: int
    hi: int
    first: int = 0
    stop: int = 0
    tiles: int = 1
    chunk_rows: int = 1  # rows per chunk along the scan axis

    def encodes(self, chunk_row: int, tile: int) -> bool:
        return self.first <= chunk_row * self.tiles + tile < self.stop

    def owns_row(self, chunk_row: int) -> bool:
        return self.encodes(chunk_row, 0)

    def raw_rows(self) -> tuple[int, int]:
        """[lo, hi) of the rows this rank sends raw when its write has no pipeline: its head rows (a
        share starting inside a chunk) and the chunk rows whose first tile it holds."""
        if self.tiles == 1:
            return self.lo, self.hi
        rows = self.chunk_rows
        owned = [r for r in range(-(-self.lo // rows), -(-self.hi // rows)) if self.owns_row(r)]
        lo = self.lo if self.lo % rows or not owned else owned[0] * rows
        hi = min(self.hi, (owned[-1] + 1) * rows if owned else -(-self.lo // rows) * rows)
        return lo, max(hi, lo)


@dataclass
class BatchCost:
    """What a batch cost one rank: process CPU seconds (reading, encoding, sending or storing), and the
    bytes of rows it encoded."""

    cpu_s: float
    nbytes: int


@dataclass
class ShareSplit:
    """The split of each write's chunk rows among `ranks` writer ranks (rank 0: the storing rank)."""

    ranks: int
    fixed: float | None = None  # NXPAR_STORING_SHARE: the storing rank's share of every write, never balanced
    overheads: dict[str, float] = field(default_factory=dict)  # scheme -> storing's cost, in bytes of rows

    def balanced(self, scheme: str, row_bytes: int, storing: BatchCost, others: list[BatchCost]) -> float | None:
        """STORING RANK: the overhead this batch measured (smoothed), or None to keep the current one
        (fixed, no work to tell by, a move below MIN_CHANGE of `row_bytes`, a chunk row of the batch)."""
        done = [c for c in others if c.nbytes > 0 and c.cpu_s > 0]
        if self.fixed is not None or not done:
            return None
        per_byte = sum(c.cpu_s for c in done) / sum(c.nbytes for c in done)
        measured = max(storing.cpu_s - per_byte * storing.nbytes, 0.0) / per_byte
        current = self.overheads.get(scheme, 0.0)
        new = current + SMOOTHING * (measured - current)
        return new if abs(new - current) >= MIN_CHANGE * row_bytes else None

    def counts(self, nrows: int, row_bytes: int, scheme: str, biggest: bool, turn: int = 0) -> list[int]:
        """Chunks of each rank for a write of `nrows` chunks of `row_bytes` each; the chunks left over
        from an even split go one each to the other ranks from the `turn`-th on (a turn that moves
        from step to step: no rank always gets them)."""
        if self.ranks == 1:
            return [nrows]
        if self.fixed is not None:
            mine = min(math.floor(nrows * self.fixed / (self.fixed + self.ranks - 1) + 0.5), nrows)
        elif biggest:
            mine = storing_chunks(nrows, self.ranks, self.overheads.get(scheme, 0.0) / max(row_bytes, 1))
        else:
            mine = storing_chunks(nrows, self.ranks, 0.0)
        rest = nrows - mine
        others = self.ranks - 1
        return [mine] + [rest // others + (1 if (k - turn) % others < rest % others else 0) for k in range(others)]

    def assignments(self, extents: list[tuple[int, int, int, int, int]], scheme: str, rank: int) -> list[Share]:
        """Rank `rank`'s part of each write; extents: (start, stop, rows per chunk, bytes per row, chunks
        per chunk row) of each write ([start, start): nobody writes it); scheme: the batch's
        (`batch_scheme`): its biggest write is balanced. The chunks are split in chunk id order, so a
        rank's rows are contiguous; the head rows (before the first chunk boundary) are the storing
        rank's."""
        sizes = [(stop - start) * nbytes for start, stop, _, nbytes, _ in extents]
        biggest = sizes.index(max(sizes)) if sizes else -1
        out = []
        for i, (start, stop, chunk_rows, row_nbytes, tiles) in enumerate(extents):
            if stop <= start:
                out.append(Share(start, start))
                continue
            head_end = min(-(-start // chunk_rows) * chunk_rows, stop)
            first_row = head_end // chunk_rows
            stop_row = -(-stop // chunk_rows) if stop > head_end else first_row
            counts = self.counts((stop_row - first_row) * tiles, chunk_rows * row_nbytes // tiles, scheme,
                                 i == biggest, turn=first_row)
            first = first_row * tiles + sum(counts[:rank])
            end = first + counts[rank]
            lo, hi = start, head_end if rank == 0 else start  # the head rows: the storing rank's
            if end > first:
                if hi == lo:
                    lo = max(start, first // tiles * chunk_rows)
                hi = min(stop, -(-end // tiles) * chunk_rows)
            out.append(Share(lo, hi, first, end, tiles, chunk_rows))
        return out

    def shares(self, extents: list[tuple[int, int, int, int, int]], scheme: str, rank: int) -> list[tuple[int, int]]:
        """Rank `rank`'s rows of each write, [lo, hi) (`assignments`)."""
        return [(a.lo, a.hi) for a in self.assignments(extents, scheme, rank)]


def batch_scheme(specs_and_bytes: list[tuple[str, int]]) -> str:
    """The scheme a batch is balanced by: its biggest write's ((scheme, bytes) of each write)."""
    return max(specs_and_bytes, key=lambda item: item[1])[0] if specs_and_bytes else ""


def direct_rows(lo: int, hi: int, chunk_rows: int) -> int:
    """First row of [lo, hi) from which every chunk along the scan axis starts inside the share (== hi:
    none). Rows before it share a chunk with rows written before: they go through HDF5 on the storing
    rank, which merges them. A last chunk the share fills only in part is encoded padded with the fill
    value, as HDF5 stores it, and the rows that come later into it are merged by HDF5 like any head rows."""
    return min(-(-lo // chunk_rows) * chunk_rows, hi)
