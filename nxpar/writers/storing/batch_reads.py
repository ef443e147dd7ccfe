"""ALL WRITER RANKS (storing path): this rank's share of a WriteBatch read, and the agreement after it.

As on the MPI-IO path (executor.py, share_reads.py): each rank reads its share (one pipelined Redis
round trip, Lima / Lima2 / Mosca files), sends its reads of the next step if it has already arrived
(prefetch), then all writer ranks agree once: a read error (or the storing rank's own: no open file,
no space) fails the step on every rank; a Lima2 / Mosca write or rows not as declared that failed on
any rank are skipped on every rank, and the channel's later writes in the scan too (`given_up`).
Variable rows are padded to the largest detector dims of any rank (one more reduction, when the batch
has some). Every method marked COLLECTIVE is reached by all writer ranks with the same step.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

from mpi4py import MPI

from ...protocol import steps as st
from ...protocol.mpi_roles import sleepy_allreduce_max_all
from ...sources.redis_reader import StreamReader
from .. import layout
from ..share_reads import read_and_agree, redis_reads
from .shares import Share, ShareSplit, batch_scheme

log = logging.getLogger("nxpar.collective")


class BatchReads:
    def __init__(self, writers: MPI.Intracomm, split: ShareSplit, peek_next: Callable[[], Any]) -> None:
        self.writers = writers
        self.split = split
        self.peek_next = peek_next  # LOCAL: the next step if it has already arrived
        self.reader = StreamReader()
        # scan id -> {stream: failure}: channels given up (agreed: the same on every rank)
        self.given_up: dict[str, dict[str, st.ChannelFailure]] = {}
        self.prefetch = os.environ.get("NXPAR_PREFETCH", "1") != "0"

    def assignments(self, step: st.WriteBatch) -> list[Share]:
        """LOCAL (the same split on every rank): this rank's part of each write ([start, start) for a
        channel given up)."""
        given_up = self.given_up.get(step.scan_id, {})
        extents = [(w.start, w.stop if w.source.stream_name not in given_up else w.start, w.spec.rows_per_chunk,
                    w.spec.row_nbytes, w.spec.chunk_tiles) for w in step.writes]
        return self.split.assignments(extents, self.scheme(step), self.writers.rank)

    def shares(self, step: st.WriteBatch) -> list[tuple[int, int]]:
        """LOCAL: this rank's rows of each write, [lo, hi)."""
        return [(a.lo, a.hi) for a in self.assignments(step)]

    @staticmethod
    def share_bytes(step: st.WriteBatch, parts: list[Share]) -> int:
        """Bytes of the chunks of these parts, head rows included (what the batch's costs are measured
        against)."""
        total = 0
        for w, a in zip(step.writes, parts):
            rows = w.spec.rows_per_chunk
            head = max(min(a.hi, -(-a.lo // rows) * rows) - a.lo, 0)  # only a share that starts inside a chunk
            total += (a.stop - a.first) * rows * w.spec.row_nbytes // a.tiles + head * w.spec.row_nbytes
        return total

    @staticmethod
    def row_bytes(step: st.WriteBatch) -> int:
        """Bytes of a chunk row of the batch's biggest write."""
        biggest = max(step.writes, key=lambda w: w.spec.row_nbytes * (w.stop - w.start), default=None)
        return biggest.spec.row_nbytes * biggest.spec.rows_per_chunk if biggest is not None else 0

    @staticmethod
    def scheme(step: st.WriteBatch) -> str:
        """The compression scheme the batch is balanced by (its biggest write's)."""
        return batch_scheme([(w.spec.compression, w.spec.row_nbytes * (w.stop - w.start)) for w in step.writes])

    def written(self, step: st.WriteBatch) -> list[bool]:
        """LOCAL (the same on every rank once agreed): which writes are not given up."""
        given_up = self.given_up.get(step.scan_id, {})
        return [w.source.stream_name not in given_up for w in step.writes]

    def failures(self, step: st.WriteBatch) -> dict[str, st.ChannelFailure]:
        """{stream: failure} of the batch's channels given up (the step's value for rank 0)."""
        given_up = self.given_up.get(step.scan_id, {})
        return {w.source.stream_name: given_up[w.source.stream_name] for w in step.writes
                if w.source.stream_name in given_up}

    def read(self, step: st.WriteBatch, local_error: Callable[[], str]) -> tuple[list, list[Share]]:
        """COLLECTIVE: (rows of each write or None, this rank's part of each) after the agreement:
        StepFailed on every rank if a rank could not read (or `local_error()` says why it cannot go on)."""
        parts = self.assignments(step)
        rows = read_and_agree(self.writers, self.reader, step.writes, [(a.lo, a.hi) for a in parts],
                              self.given_up.setdefault(step.scan_id, {}), local_error, self._prefetch_next)
        return rows, parts

    def _prefetch_next(self) -> None:
        """LOCAL: this rank's Redis reads of the next step sent now, if it is here and writes rows."""
        try:  # best effort: a failure here must not keep this rank from the agreement
            step = self.peek_next() if self.prefetch else None
            if isinstance(step, st.WriteBatch):
                self.reader.prefetch([r[1:] for r in redis_reads(step.writes, self.shares(step))])
        except Exception as e:
            log.debug("prefetch skipped: %s", e)

    def variable_dims(self, step: st.WriteBatch, rows: list) -> dict[int, tuple[int, ...]]:
        """COLLECTIVE when the batch writes variable rows (every rank knows which, once agreed): {write
        index: the largest detector dims of its rows on any rank}; {} (no communication) otherwise."""
        wanted = [i for i, (w, ok) in enumerate(zip(step.writes, self.written(step))) if ok and w.spec.variable]
        if not wanted:
            return {}
        local: list[int] = []
        for i in wanted:
            ndet = len(step.writes[i].spec.detector_shape)
            local += list(layout.max_dims(rows[i], ndet) if rows[i] is not None else (0,) * ndet)
        agreed = sleepy_allreduce_max_all(self.writers, local) if local else []
        dims, at = {}, 0
        for i in wanted:
            ndet = len(step.writes[i].spec.detector_shape)
            dims[i], at = tuple(agreed[at:at + ndet]), at + ndet
        return dims

    def take_balance(self, balance: tuple[str, float] | None) -> None:
        """The storing rank's new overhead for a scheme, from its plan (every rank, in plan order)."""
        if balance is not None:
            self.split.overheads[balance[0]] = balance[1]

    def forget(self, scan_id: str) -> None:
        """The scan ended (CloseFile): its channels' failures and its Redis readers go."""
        self.given_up.pop(scan_id, None)
        self.reader.forget(scan_id)
