"""RANKS 1..N-1: the writer loop. Receives steps from rank 0, executes them collectively."""
from __future__ import annotations

import logging

from mpi4py import MPI

from ..protocol import steps as st
from ..protocol.mpi_roles import RESULT_TAG, STEP_TAG, CollectiveTimeout, sleepy_allreduce_max, wait_for_message
from .executor import StepExecutor, StepFailed

UNAGREED_FAILURE_TIMEOUT_S = 60.0

log = logging.getLogger("nxpar.writers.rank_loop")


def combine(results: list[st.StepResult]) -> st.StepResult:
    """One answer for rank 0: failed if any writer failed (first distinct errors kept)."""
    errors = list(dict.fromkeys(r.error for r in results if not r.ok))
    if errors:
        return st.StepResult(False, error="; ".join(errors))
    return results[0]


def run_writer_rank(world: MPI.Intracomm, writers: MPI.Intracomm) -> None:
    # mpirun forwards SIGTERM to every rank: let rank 0 close the files and dismiss us instead.
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    executor = StepExecutor(writers)
    arrived: list = []  # a step received early by peek_next (rank 0 keeps up to 2 in flight)

    def peek_next():
        """LOCAL: the next step if rank 0 has already sent it (kept for the loop), else None."""
        if not arrived and world.Iprobe(source=0, tag=STEP_TAG):
            arrived.append(world.recv(source=0, tag=STEP_TAG))
        return arrived[0] if arrived else None

    executor.peek_next = peek_next
    while True:
        if arrived:
            step = arrived.pop(0)
        else:
            wait_for_message(world, 0, STEP_TAG)
            step = world.recv(source=0, tag=STEP_TAG)
        if isinstance(step, st.Shutdown):
            executor.close_all()
            break
        unagreed = False
        try:
            result = st.StepResult(True, value=executor.execute(step))
        except StepFailed as e:  # all writer ranks raised it together
            result = st.StepResult(False, error=f"{e}")
        except Exception as e:  # raised here only, maybe: the others may be inside a collective
            log.warning("step %s failed on this rank: %s", type(step).__name__, e, exc_info=True)
            result = st.StepResult(False, error=f"{e}")
            unagreed = True
        try:
            any_failed = sleepy_allreduce_max(writers, 0 if result.ok else 1,
                                              timeout=UNAGREED_FAILURE_TIMEOUT_S if unagreed else None)
        except CollectiveTimeout:
            # A hang would stop every scan for good; aborting lets the supervisor restart the job, and
            # the restarted service reports the interrupted scans (journal).
            log.critical("writer ranks are stuck after '%s' failed on rank %d only: aborting the MPI job",
                         result.error, world.rank)
            world.Abort(70)
        if any_failed:
            results = writers.gather(result, root=0)  # details only when a rank failed
            result = combine(results) if writers.rank == 0 else result
        if writers.rank == 0:
            world.send(result, dest=0, tag=RESULT_TAG)
