"""RANK 0 ONLY: which rows of a scan's streams go to the writers now, and back-pressure.

`rows_due` cuts a stream's pending rows by bytes and time; `RowWrites` gathers the due rows of all
streams of a scan into one `WriteBatch`, keeps at most MAX_INFLIGHT batches of the scan pending
and accounts for them in order (a failed one raises StepError). Nothing is buffered here: rows
stay in Redis until a writer rank reads them. A completed batch may name Lima2 / Mosca channels
the writers could not read (its result value, writers/share_reads.py): their rows are not
counted as written, the stream is given up (done: the scan does not wait for it) and `on_failed`
says so (a warning, never a FAULT).
"""
from __future__ import annotations

import collections
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from ..nexus.file_plan import StreamKind
from ..nexus.plugin_plan import COPIED_KINDS
from ..protocol import steps as st
from ..protocol.options import Tuning
from .writer_channel import StepError

MAX_INFLIGHT = 2  # row-writing steps of one scan submitted and not yet completed
BIG_CHUNK_ROW_BYTES = 1 << 20  # a partial chunk row over this is costly to rewrite (RowWrites._flush_all)
BIG_CHUNK_DELAY_FACTOR = 10  # partial chunks of big chunk rows wait this many max delays (RowWrites._flush_all)
# streams whose rows the writer ranks write (Lima2 / Mosca copies: their PluginMode, plugin_plan.py)
ROW_KINDS = (StreamKind.ARRAY, StreamKind.LIMA_COPY, *COPIED_KINDS)


@dataclass
class StreamProgress:
    name: str
    kind: str  # a StreamKind, or a PluginMode for Lima2 / Mosca channels
    spec: st.ArraySpec | None = None
    available: int = 0
    written: int = 0
    submitted: int = 0  # rows sent to the writers (written once their step completed)
    sealed: bool = False
    reported: int = 0  # lima_copy: frames Lima reported (available = frames saved in closed files)
    linked: bool = False  # groups/links of its dataset written
    last_write: float = field(default_factory=time.monotonic)
    given_up: bool = False  # Lima2 / Mosca: the writers could not read its rows; no more writes

    @property
    def done(self) -> bool:
        return self.given_up or self.sealed and self.submitted >= self.available


def rows_due(submitted: int, available: int, rows_per_chunk: int, row_nbytes: int, budget_bytes: int,
             flush_all: bool, min_bytes: int = 0, unit_chunks: int = 1, whole_units: bool = False) -> int:
    """End (exclusive) of the rows of a stream to write now, from `submitted` on.

    Nothing while less than `min_bytes` is pending (a step has a fixed cost: kHz rows of a few
    bytes are gathered for up to the max delay); at most `budget_bytes` (but at least one chunk),
    cut at a chunk boundary when the budget cuts; a partly filled last chunk only when
    `flush_all` (sealed stream or max delay reached): with filters every write of a partial chunk
    recompresses it, so small rows wait for their chunk, for a bounded time.

    `unit_chunks` (the writer ranks): a step lasts as long as its busiest rank, so a cut by the budget
    takes a multiple of that many chunk rows (the nearest to the budget, when it holds one at all):
    each rank reads and encodes whole chunk rows. Fewer chunk rows are shared by their tiles (several
    ranks then read the same rows: more for Redis to send).
    With `whole_units` the rows pending are cut to whole units too, unless `flush_all` (RowWrites: until
    the max delay since the stream's last write: a step of one chunk row would keep the other writer
    ranks waiting for the one that has it).
    """
    if available <= submitted or (not flush_all and (available - submitted) * row_nbytes < min_bytes):
        return submitted
    chunk_bytes = max(row_nbytes * rows_per_chunk, 1)
    units = round(budget_bytes / (chunk_bytes * unit_chunks))
    chunks = max(units * unit_chunks if units >= 1 else budget_bytes // chunk_bytes, 1)
    end = (submitted // rows_per_chunk + chunks) * rows_per_chunk
    if end < available and not (flush_all and (available - end) * 2 < chunks * rows_per_chunk):
        return end  # (a last piece under half of this step goes with it: one step less at the end)
    if flush_all:
        return available
    first, whole = submitted // rows_per_chunk, available // rows_per_chunk
    if whole_units and unit_chunks > 1:
        whole = first + (whole - first) // unit_chunks * unit_chunks
    return max(whole * rows_per_chunk, submitted)


class RowWrites:
    """The row-writing steps of one scan: sized by bytes and time, at most MAX_INFLIGHT pending."""

    def __init__(self, scan_key: str, submit: Callable[[st.WriteBatch], Future], nwriters: int,
                 tuning: Tuning, on_failed: Callable[[str, int, int, st.ChannelFailure], None] | None = None) -> None:
        """on_failed(stream, start, stop, failure): the writers skipped rows [start, stop) of a stream
        (unreadable, or not what it declares), the stream is given up."""
        self.scan_key = scan_key
        self.submit = submit
        self.nwriters = nwriters
        self.tuning = tuning
        self.on_failed = on_failed
        self.bytes_written = 0
        self._inflight: collections.deque[tuple[list[StreamProgress], st.WriteBatch, Future]] = collections.deque()
        self._following: collections.deque[Future] = collections.deque()  # steps after rows (their links)

    @property
    def step_bytes(self) -> int:
        return self.tuning.step_bytes_per_writer * self.nwriters

    def queued_bytes(self, streams: list[StreamProgress]) -> int:
        """Bytes of rows known to be published and not yet sent to the writers."""
        return sum((p.available - p.submitted) * p.spec.row_nbytes for p in streams
                   if p.kind in ROW_KINDS and p.spec is not None and not p.given_up)

    def knows_enough(self, streams: list[StreamProgress]) -> bool:
        """Enough rows are known to fill the next steps: asking Redis for lengths can wait.

        blissdata's stream length is the last entry read whole: a frame per poll, i.e. one frame
        more over the wire per step of 8 frames while a writer is behind (perf/HISTORY.md)."""
        return self.queued_bytes(streams) >= (MAX_INFLIGHT + 1) * self.step_bytes

    def submit_due(self, streams: list[StreamProgress], spec_of: Callable[[StreamProgress], st.ArraySpec],
                   source_of: Callable[[StreamProgress, int], st.RowsSource]
                   ) -> list[StreamProgress]:
        """One WriteBatch with the rows that are due in every stream, within the byte budget; the
        streams it wrote to.

        Called only when the scan has room in the pipeline, so rows that arrived while the writers
        were busy go together: the step count follows the writers' pace, not the point rate.
        Streams written longest ago come first, so none starves behind big frames. A stream's first
        rows go at once when its chunk row is small (its dataset and links are made during the scan,
        not all at its end); `_flush_all` says when partial chunks go.
        """
        budget = self.step_bytes
        now = time.monotonic()
        writes: list[tuple[StreamProgress, st.WriteRows]] = []
        for p in sorted(streams, key=lambda p: p.last_write):
            if p.kind not in ROW_KINDS or p.given_up or p.available <= p.submitted or budget <= 0:
                continue
            if p.spec is None:
                p.spec = spec_of(p)
            big = self._big(p)
            stop = rows_due(p.submitted, p.available, p.spec.rows_per_chunk, p.spec.row_nbytes, budget,
                            flush_all=self._flush_all(p, big, now), min_bytes=self.tuning.min_step_bytes * self.nwriters,
                            unit_chunks=self.nwriters, whole_units=big and now - p.last_write < self.tuning.max_delay_s)
            if stop > p.submitted:
                write = st.WriteRows(p.spec, source_of(p, stop), p.submitted, stop)
                writes.append((p, write))
                budget -= write.nbytes
        if not writes:
            return []
        batch = st.WriteBatch(self.scan_key, [w for _, w in writes])
        self._inflight.append(([p for p, _ in writes], batch, self.submit(batch)))
        for p, write in writes:
            p.submitted, p.last_write = write.stop, now
        return [p for p, _ in writes]

    def _big(self, p: StreamProgress) -> bool:
        """A stream whose chunk row is over BIG_CHUNK_ROW_BYTES (frames): its steps go by whole chunk
        rows, shared among the writer ranks (`rows_due`'s units)."""
        return p.spec.rows_per_chunk * p.spec.row_nbytes > BIG_CHUNK_ROW_BYTES

    def _flush_all(self, p: StreamProgress, big: bool, now: float) -> bool:
        """Whether a stream's rows go up to the last one, a partly filled chunk included: sealed; its
        first rows, or the max delay passed since its last write. A stream with big chunk rows (`_big`)
        has its partial chunks rewritten whole by every later write into them (decoded, merged, encoded
        again by the storing rank while the others wait: ~2 s for a 16 MiB gzip chunk row in a fifth of
        a core): its first rows wait for a chunk row, and its partial chunks for BIG_CHUNK_DELAY_FACTOR ×
        the max delay, while the writers have nothing of the scan's to do."""
        if p.sealed or p.submitted == 0 and not big:
            return True
        if big:
            return now - p.last_write >= BIG_CHUNK_DELAY_FACTOR * self.tuning.max_delay_s and not self._inflight
        return now - p.last_write >= self.tuning.max_delay_s

    def submit_following(self, step: Any) -> None:
        """A step that follows the rows just submitted (their datasets' links), not waited for: the
        writers run it after them; its answer is checked with the row writes' (StepError if failed)."""
        self._following.append(self.submit(step))

    def wait_for_room(self) -> None:
        """At most MAX_INFLIGHT batches of this scan pending: the scan thread never runs far ahead."""
        self._complete()
        while len(self._inflight) >= MAX_INFLIGHT:
            self._complete(wait_oldest=True)

    def _complete(self, wait_oldest: bool = False) -> None:
        """Account for the batches that finished, oldest first; a failed one raises StepError."""
        self._check_following(wait=False)
        while self._inflight and (wait_oldest or self._inflight[0][2].done()):
            progress, batch, future = self._inflight.popleft()
            result: st.StepResult = future.result()
            if not result.ok:
                raise StepError(result.error)
            not_written = result.value if isinstance(result.value, dict) else {}
            for p, write in zip(progress, batch.writes):
                if p.name in not_written:
                    self._give_up(p, write, _as_failure(not_written[p.name]))
                elif not p.given_up:  # rows after a hole are not counted (nor written: the writers skip them)
                    p.written = write.stop
                    self.bytes_written += write.nbytes
            wait_oldest = False

    def _give_up(self, p: StreamProgress, write: st.WriteRows, failure: st.ChannelFailure) -> None:
        """The writers could not read these rows: none of them counts, the stream gets no more writes."""
        if p.given_up:
            return
        p.given_up = True
        if self.on_failed is not None:
            self.on_failed(p.name, write.start, write.stop, failure)

    def wait_all(self, ignore_errors: bool = False) -> None:
        """Until every pending row write and following step completed (after a failure: ignoring
        theirs, keeping the rest)."""
        while self._inflight or self._following:
            try:
                if self._inflight:
                    self._complete(wait_oldest=True)
                else:
                    self._check_following(wait=True)
            except StepError:
                if not ignore_errors:
                    raise

    def _check_following(self, wait: bool) -> None:
        while self._following and (wait or self._following[0].done()):
            result: st.StepResult = self._following.popleft().result()
            if not result.ok:
                raise StepError(result.error)


def _as_failure(value: object) -> st.ChannelFailure:
    """The writers' word for a skipped channel (a bare reason is an unreadable one)."""
    return value if isinstance(value, st.ChannelFailure) else st.ChannelFailure(st.FailureKind.UNREADABLE, str(value))
