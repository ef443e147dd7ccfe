"""RANKS 1..N-1: the writer loop. Receives numbered steps from rank 0, executes them collectively,
agrees on the outcome, and the first writer rank answers rank 0 with the step's number. The executor is
the write path's (`executor_for`): the storing rank's or a sending rank's (writers/storing/), or the
StepExecutor (one writer, or MPI-IO). On the storing path the storing rank answers alone (the others'
failures reach it during the step), and the other ranks go on to the next step without that agreement.

Every rank tells rank 0 how far it got with each step (`ProgressMark`, sent and never waited for), so
that rank 0's watchdog names the rank a stalled step waits for. A step that raised on some ranks only
ends in the same agreement as any other: every rank reports the failure and the step fails everywhere;
if the other ranks never reach the agreement (stuck in a collective HDF5 call this rank left), rank 0's
watchdog warns, then stops the job for its supervisor to restart.
"""
from __future__ import annotations

import logging
import os
import pickle
import signal
from typing import Any

from mpi4py import MPI

from ..protocol import steps as st
from ..protocol.mpi_roles import PROGRESS_TAG, RESULT_TAG, STEP_TAG, sleepy_allreduce_max, wait_for_message
from .executor import StepExecutor, StepFailed
from .write_mode import WritePath, write_path

log = logging.getLogger("nxpar.writers.rank_loop")


def combine(results: list[st.StepResult]) -> st.StepResult:
    """One answer for rank 0: failed if any writer failed (first distinct errors kept)."""
    errors = list(dict.fromkeys(r.error for r in results if not r.ok))
    if errors:
        return st.StepResult(False, error="; ".join(errors))
    return results[0]


def executor_for(writers: MPI.Intracomm) -> Any:
    """COLLECTIVE at start-up: this writer rank's executor for the write path (write_mode.write_path):
    on the storing path the storing rank's or a sending rank's, else the StepExecutor (direct, MPI-IO).
    The first writer rank's environment decides for all (as file_access.agreed_settings)."""
    from .storing.sending_rank import SendingRankExecutor
    from .storing.shares import ShareSplit, fixed_share_from_env
    from .storing.storing_rank import StoringRankExecutor

    mine = (write_path(writers.size), fixed_share_from_env()) if writers.rank == 0 else None
    path, fixed = writers.bcast(mine, root=0)
    if path is not WritePath.STORING:
        return StepExecutor(writers)
    split = ShareSplit(writers.size, fixed)
    return StoringRankExecutor(writers, split) if writers.rank == 0 else SendingRankExecutor(writers, split)


class WriterRankLoop:
    def __init__(self, world: MPI.Intracomm, writers: MPI.Intracomm, executor: Any = None) -> None:
        self.world = world
        self.writers = writers
        self.executor = executor or executor_for(writers)
        self.executor.peek_next = self.peek_next
        self._arrived: list[st.Envelope] = []  # received early by peek_next (rank 0 keeps 2 in flight)
        self._marks: list[MPI.Request] = []

    def run(self) -> None:
        while True:
            envelope = self._next()
            if isinstance(envelope.step, st.Shutdown):
                self.executor.close_all()
                break
            self._mark(envelope.seq, st.MarkKind.GOT)
            result = self._execute(envelope)
            if not getattr(self.executor, "answers_alone", False):  # the storing path: its first rank's word
                result = self._agree(result)
            if self.writers.rank == 0:
                self.world.send(st.Answer(envelope.seq, result), dest=0, tag=RESULT_TAG)
        self._finish_marks()

    # -- receiving ------------------------------------------------------------------------------------
    def _receive(self) -> st.Envelope:
        envelope = pickle.loads(self.world.recv(source=0, tag=STEP_TAG))
        assert isinstance(envelope, st.Envelope), f"rank 0 sent {type(envelope).__name__}, not a step"
        return envelope

    def _next(self) -> st.Envelope:
        if self._arrived:
            return self._arrived.pop(0)
        wait_for_message(self.world, 0, STEP_TAG)
        return self._receive()

    def peek_next(self) -> Any:
        """LOCAL: the next step if rank 0 has already sent it (kept for the loop), else None."""
        if not self._arrived and self.world.Iprobe(source=0, tag=STEP_TAG):
            self._arrived.append(self._receive())
        return self._arrived[0].step if self._arrived else None

    # -- executing and agreeing -------------------------------------------------------------------------
    def _execute(self, envelope: st.Envelope) -> st.StepResult:
        step = envelope.step
        try:
            result = st.StepResult(True, value=self.executor.execute(step))
        except StepFailed as e:  # all writer ranks raised it together
            result = st.StepResult(False, error=f"{e}")
        except Exception as e:  # raised here only, maybe: the others may still be inside a collective
            log.warning("step %s failed on this rank: %s", type(step).__name__, e, exc_info=True)
            result = st.StepResult(False, error=f"{e}")
        self._mark(envelope.seq, st.MarkKind.DONE if result.ok else st.MarkKind.FAILED, result.error)
        return result

    def _agree(self, result: st.StepResult) -> st.StepResult:
        """COLLECTIVE: failed everywhere if it failed anywhere; the first writer rank gets the reasons."""
        if not sleepy_allreduce_max(self.writers, 0 if result.ok else 1):
            return result
        results = self.writers.gather(result, root=0)  # details only when a rank failed
        return combine(results) if self.writers.rank == 0 else result

    # -- progress marks ---------------------------------------------------------------------------------
    def _mark(self, seq: int, kind: st.MarkKind, error: str = "") -> None:
        mark = st.ProgressMark(seq, self.world.rank, kind, error[:200])
        self._marks = [r for r in self._marks if not r.Test()]
        self._marks.append(self.world.isend(mark, dest=0, tag=PROGRESS_TAG))

    def _finish_marks(self) -> None:
        """Marks are small (sent eagerly): they complete at once, or are left to MPI_Finalize."""
        MPI.Request.Testall(self._marks)


def leave_without_closing(files: Any) -> None:
    """A file whose writer ranks diverged (scan_files.py) is never closed: HDF5 would close it at exit,
    collectively, and hang. MPI is finalised and the process ends without HDF5's exit handlers."""
    if files.abandoned:
        log.error("leaving with %d file(s) whose writer ranks diverged, not closed: %s", len(files.abandoned),
                  ", ".join(f.path for f in files.abandoned))
        MPI.Finalize()
        os._exit(0)


def run_writer_rank(world: MPI.Intracomm, writers: MPI.Intracomm) -> None:
    # mpirun forwards SIGTERM and SIGINT (Ctrl-C) to every rank: rank 0 closes the files and dismisses us.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = WriterRankLoop(world, writers)
    loop.run()
    leave_without_closing(loop.executor.files)
