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

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from mpi4py import MPI

from ...protocol import steps as st
from ...protocol.mpi_roles import POLL_MIN_S, WORKING_POLL_MAX_S, next_sleep
from ..agreement import StepFailed
from ..direct.chunk_codec import keep_freed_buffers
from .batch_reads import BatchReads
from .bundle import Part, compress_threads, start_encoding
from .plan import BatchPlan
from .shares import ShareSplit
from .transfer import receive_plan, send_part, wait_all


@dataclass
class NoFiles:
    """What rank_loop asks of an executor's files at exit: this rank never has any to abandon."""

    abandoned: list = field(default_factory=list)


class SendingRankExecutor:
    answers_alone = True

    def __init__(self, writers: MPI.Intracomm, split: ShareSplit) -> None:
        self.writers = writers
        self.files = NoFiles()
        self.peek_next: Callable[[], Any] = lambda: None  # set by the rank loop
        self.batch = BatchReads(writers, split, lambda: self.peek_next())
        self.pool = ThreadPoolExecutor(compress_threads(writers.size), thread_name_prefix="nxpar-compress")
        keep_freed_buffers()

    def execute(self, step: Any) -> Any:
        """COLLECTIVE with the storing rank's executor (the same step on every writer rank)."""
        if isinstance(step, st.WriteBatch):
            return self._write_batch(step)
        if isinstance(step, st.CloseFile):
            self.batch.forget(step.scan_id)
        return None

    def _write_batch(self, step: st.WriteBatch) -> dict[str, st.ChannelFailure]:
        cpu_since = time.process_time()
        rows, shares = self.batch.read(step, lambda: "")
        self.batch.variable_dims(step, rows)  # the storing rank sends the padded dims in its plan
        plan = receive_plan(self.writers)
        self.batch.take_balance(plan.balance)
        if plan.error:  # the storing rank fails the step with the same reason
            raise StepFailed(plan.error)
        self._send_parts(step, plan, shares, rows, cpu_since)
        return self.batch.failures(step)

    def _send_parts(self, step: st.WriteBatch, plan: BatchPlan, shares: list, rows: list, cpu_since: float) -> None:
        """Each part sent as it is encoded, then the last one, whatever happens (the storing rank waits for it)."""
        requests: list[MPI.Request] = []
        encoding, error = None, ""
        try:
            if len(plan.writes) != len(step.writes):
                raise ValueError(f"the storing rank's plan has {len(plan.writes)} writes, the step {len(step.writes)}")
            encoding = start_encoding(self.pool, plan, step.writes, shares, rows)
            for future in encoding.parts:
                part = encoded_part(future, requests)
                error = error or part.error
                if not error:
                    requests += send_part(self.writers, part)
        except Exception as e:
            error = error or f"{type(e).__name__}: {e}"
        nbytes = self.batch.share_bytes(step, shares)
        last = encoding.last(cpu_since, nbytes, error) if encoding is not None else Part(error=error, last=True)
        requests += send_part(self.writers, last)
        wait_all(requests)

    def close_all(self) -> None:
        """Shutdown: nothing to close."""
        self.pool.shutdown(wait=True)


def encoded_part(future: Future, requests: list[MPI.Request]) -> Part:
    """The part once encoded (or its error), the parts already sent progressing meanwhile (a large
    message moves only while its sender calls into MPI)."""
    sleep_s = POLL_MIN_S
    while not wait([future], timeout=sleep_s).done:
        MPI.Request.Testall(requests)
        sleep_s = next_sleep(sleep_s, WORKING_POLL_MAX_S)
    try:
        return future.result()
    except Exception as e:
        return Part(error=f"compressing chunks: {type(e).__name__}: {e}")
