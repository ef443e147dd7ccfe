"""THE OTHER WRITER RANKS of the storing path (writer ranks 1..): no scan file open, ever.

Every step reaches them (rank 0 sends each step to every writer rank, rank_loop.py); only a WriteBatch
is theirs to work on: read their share, agree, take the storing rank's plan, encode their chunks and
send them in parts as they are encoded, the last part with their raw rows, their error if any and
what the batch cost them (storing_rank.py's docstring has the whole exchange). Whatever fails after
the plan still ends in a last part, so that the storing rank never waits for one that will not come.
The metadata steps are the storing rank's alone: here a CloseFile only ends the scan's reads. The
storing rank answers rank 0 for all (`answers_alone`): these ranks go on to the next step at once.
"""
from __future__ import annotations

import collections
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from mpi4py import MPI

from ...protocol import steps as st
from ...protocol.mpi_roles import POLL_MIN_S, next_sleep, set_idle_work
from ..agreement import StepFailed
from ..direct.chunk_codec import keep_freed_buffers
from .batch_reads import BatchReads
from .bundle import Encoding, Part, compress_threads, start_encoding
from .shares import ShareSplit
from .transfer import receive_plan, send_part


@dataclass
class NoFiles:
    """What rank_loop asks of an executor's files at exit: this rank never has any to abandon."""

    abandoned: list = field(default_factory=list)


class SendingRankExecutor:
    answers_alone = True
    pipelined = False  # True (WriterRankLoop): parts go out while the next step is read (`pump`)

    def __init__(self, writers: MPI.Intracomm, split: ShareSplit) -> None:
        self.writers = writers
        self.files = NoFiles()
        self.peek_next: Callable[[], Any] = lambda: None  # set by the rank loop
        self.batch = BatchReads(writers, split, lambda: self.peek_next())
        self.pool = ThreadPoolExecutor(compress_threads(writers.size), thread_name_prefix="nxpar-compress")
        keep_freed_buffers()
        self.outbox: collections.deque[Outgoing] = collections.deque()
        self.requests: list[MPI.Request] = []  # sends not yet complete (they hold their buffers)
        set_idle_work(self.pump)  # parts go out while this rank waits for anything (the rank loop's own wraps it)

    def execute(self, step: Any) -> Any:
        """COLLECTIVE with the storing rank's executor (the same step on every writer rank); any step
        but a WriteBatch after every part of the batches before it is sent."""
        if isinstance(step, st.WriteBatch):
            return self._write_batch(step)
        self.flush()
        if isinstance(step, st.CloseFile):
            self.batch.forget(step.scan_id)
        return None

    def _write_batch(self, step: st.WriteBatch) -> dict[str, st.ChannelFailure]:
        """Read, agree, take the plan, start encoding: the parts go out later (`pump`), while this rank
        reads and agrees on the next batch."""
        cpu_since = time.process_time()
        rows, shares = self.batch.read(step, lambda: "")
        self.batch.variable_dims(step, rows)  # the storing rank sends the padded dims in its plan
        plan = receive_plan(self.writers)
        self.batch.take_balance(plan.balance)
        if plan.error:  # the storing rank fails the step with the same reason
            raise StepFailed(plan.error)
        nbytes = self.batch.share_bytes(step, shares)
        try:
            if len(plan.writes) != len(step.writes):
                raise ValueError(f"the storing rank's plan has {len(plan.writes)} writes, the step {len(step.writes)}")
            self.outbox.append(Outgoing(start_encoding(self.pool, plan, step.writes, shares, rows), cpu_since, nbytes))
        except Exception as e:
            self.outbox.append(Outgoing(None, cpu_since, nbytes, f"{type(e).__name__}: {e}"))
        if not self.pipelined:  # called alone (tests): every part sent before the step ends
            self.flush()
        self.pump()
        return self.batch.failures(step)

    def pump(self) -> bool:
        """LOCAL, never waits: the parts encoded so far sent, in order, each batch's last part after its
        others (whatever failed: the storing rank waits for it); whether anything was sent."""
        sent = False
        while self.outbox:
            out = self.outbox[0]
            if out.parts and not out.parts[0].done():
                break
            if out.parts:
                part = encoded_part(out.parts.pop(0))
                out.error = out.error or part.error
                if not out.error:
                    self.requests += send_part(self.writers, part)
            else:
                self.requests += send_part(self.writers, out.last())
                self.outbox.popleft()
            sent = True
        self.requests = [r for r in self.requests if not r.Test()]
        return sent

    def flush(self) -> None:
        """Until every part of every batch is sent (sleep-polled)."""
        sleep_s = POLL_MIN_S
        while self.outbox or self.requests:
            if self.pump():
                sleep_s = POLL_MIN_S
                continue
            time.sleep(sleep_s)
            sleep_s = next_sleep(sleep_s)

    def close_all(self) -> None:
        """Shutdown: every part sent, nothing to close."""
        self.flush()
        self.pool.shutdown(wait=True)


@dataclass
class Outgoing:
    """One batch's parts of this rank, sent as they are encoded, then its last part."""

    encoding: Encoding | None
    cpu_since: float
    nbytes: int
    error: str = ""
    parts: list[Future] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parts = list(self.encoding.parts) if self.encoding is not None else []

    def last(self) -> Part:
        if self.encoding is None:
            return Part(error=self.error, last=True)
        return self.encoding.last(self.cpu_since, self.nbytes, self.error)


def encoded_part(future: Future) -> Part:
    """The part a done task encoded, or its error."""
    try:
        return future.result()
    except Exception as e:
        return Part(error=f"compressing chunks: {type(e).__name__}: {e}")
