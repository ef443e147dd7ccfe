"""RANK 0 ONLY: the single thread that drives the writer ranks.

Scan-driver threads (one per scan, several sessions) submit steps here; this thread sends them to the
writers in one global order and hands back the combined results, in the same order. Up to `depth` steps
are in flight: the writers find the next step already queued when they finish one, so they never wait
for rank 0. With N == 1 it executes the steps itself (the local executor). No other rank-0 thread makes
MPI calls, nor HDF5 calls other than the executor's own background thread storing compressed chunks
(writers/direct/chunk_writer.py, through h5py's lock).

What cannot be undone stops the job instead of going on wrong: every step is numbered and every answer
names its step (an answer for another step, a step that reached some writer ranks and not others, this
thread dying: the writer ranks would be out of step for good). Stopping the job (MPI_Abort) hands over to
the supervisor, which restarts it, and the restarted service resumes the scans from Redis. A step whose
answer does not come is the watchdog's (stall_watch.py): a warning, then a restart. So every future is
answered, or the process ends.
"""
from __future__ import annotations

import collections
import logging
import pickle
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

from mpi4py import MPI

from ..protocol import steps as st
from ..protocol.mpi_roles import POLL_MIN_S, PROGRESS_TAG, RESULT_TAG, STEP_TAG, backoff
from .stall_watch import StallLimits, StallWatch

DEPTH = 2  # steps in flight to the writer ranks
ABORT_CODE = 71  # the exit status mpirun reports when rank 0 stops the job on purpose

log = logging.getLogger("nxpar.channel")


class StepError(RuntimeError):
    """A step failed on the writer ranks (the message says which and why)."""


class ChannelBroken(RuntimeError):
    """The writer ranks can no longer be driven in step (the job is being stopped)."""


def abort_job(world: Any, reason: str) -> None:
    """Stop the whole MPI job (every rank); its supervisor restarts it."""
    log.critical("stopping the MPI job: %s", reason)
    for handler in logging.getLogger("nxpar").handlers:
        handler.flush()
    world.Abort(ABORT_CODE)


class WriterChannel:
    def __init__(self, world: MPI.Intracomm, local_executor: Any = None, depth: int = DEPTH,
                 limits: StallLimits | None = None, abort: Callable[[str], None] | None = None) -> None:
        """local_executor: what runs the steps when world.size == 1 (the service gives a
        writers.executor.StepExecutor on COMM_SELF, the unit tests a fake); unused otherwise.
        abort(reason): stops the job (default: MPI_Abort of `world`)."""
        self.world = world
        self.depth = max(depth, 1)
        self.nwriters = max(world.size - 1, 1)
        self._local = None
        if world.size == 1:
            if local_executor is None:
                raise ValueError("one process: rank 0 writes, so the channel needs a local executor")
            self._local = local_executor
        self._abort = abort or (lambda reason: abort_job(world, reason))
        self.watch = StallWatch(limits or StallLimits.from_env(), self._abort)
        self._queue: queue.Queue[tuple[Any, Future]] = queue.Queue()
        self._lock = threading.Lock()  # _stopping, _broken and the queue change together
        self._stopping = False
        self._broken = ""
        self._seq = 0
        self._inflight: collections.OrderedDict[int, Future] = collections.OrderedDict()
        self._thread = threading.Thread(target=self._guarded_run, name="nxpar-writer-channel", daemon=True)
        self._thread.start()
        self.watch.start()

    # -- any thread ---------------------------------------------------------------------------------
    def submit(self, step: Any) -> Future:
        """Queue a step; its future gets the writers' StepResult. After shutdown() began, or once the
        channel is broken, the future fails at once with StepError (nothing is queued behind Shutdown)."""
        future: Future = Future()
        with self._lock:
            if self._stopping or self._broken:
                future.set_exception(StepError(self._broken or "writer service is shutting down"))
            else:
                self._queue.put((step, future))
        return future

    def call(self, step: Any) -> Any:
        """Submit and wait; raises StepError with the writers' reason. The wait is bounded by the
        watchdog: a step that is never answered stops the job."""
        result: st.StepResult = self.submit(step).result()
        if not result.ok:
            raise StepError(result.error)
        return result.value

    def stall_warning(self) -> str:
        """'' or why the writer ranks look stalled right now."""
        return self.watch.warning()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Tell the writers to close their files and leave; waits for pending steps first."""
        done: Future = Future()
        with self._lock:
            if self._stopping:
                return
            self._stopping = True  # from now on submit() refuses: Shutdown is the last step queued
            self._queue.put((st.Shutdown(), done))
        try:
            done.result(timeout=timeout)
        except Exception:
            log.warning("writer ranks did not acknowledge shutdown", exc_info=True)
        self.watch.stop()

    # -- the channel thread ---------------------------------------------------------------------------
    def _guarded_run(self) -> None:
        """Whatever breaks this thread answers every future and stops the job: a silent death would
        leave every scan thread waiting forever."""
        try:
            self._run_local() if self._local is not None else self._run()
        except BaseException as e:  # noqa: B902 - even SystemExit: the futures must be answered
            reason = f"the writer channel broke ({type(e).__name__}: {e})"
            log.exception("%s", reason)
            self._break(reason)
            if self._local is None:
                self._abort(reason)

    def _break(self, reason: str) -> None:
        with self._lock:
            self._broken = reason
            pending = list(self._inflight.values())
            self._inflight.clear()
            while not self._queue.empty():
                pending.append(self._queue.get_nowait()[1])
        for future in pending:
            if not future.done():
                future.set_exception(StepError(reason))

    def _run(self) -> None:
        sleep_s = POLL_MIN_S
        while True:
            if len(self._inflight) < self.depth:
                try:
                    step, future = self._queue.get(block=not self._inflight)
                except queue.Empty:
                    pass
                else:
                    if isinstance(step, st.Shutdown):
                        return self._shutdown_writers(future)
                    self._send(step, future)
                    sleep_s = POLL_MIN_S
                    continue
            if self._receive_any():
                sleep_s = POLL_MIN_S
                continue
            sleep_s = backoff(sleep_s)  # sleep-poll: MPICH's blocking receive would spin a core

    def _send(self, step: Any, future: Future) -> None:
        """Every writer rank gets the step, or none does. Pickled once, before anything is sent: a
        step that cannot be pickled fails alone. A send that fails after some ranks got the step
        leaves the ranks out of step: the job is stopped."""
        self._seq += 1
        try:
            data = pickle.dumps(st.Envelope(self._seq, step), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            future.set_result(st.StepResult(False, error=f"cannot send step {type(step).__name__}: {e}"))
            return
        self._inflight[self._seq] = future
        self.watch.sent(self._seq, step)
        for rank in range(1, self.world.size):
            try:
                self.world.send(data, dest=rank, tag=STEP_TAG)
            except Exception as e:
                raise ChannelBroken(f"sending step #{self._seq} to writer rank {rank} failed "
                                    f"({e}) after ranks 1..{rank - 1} got it") from e

    def _receive_any(self) -> bool:
        """Progress marks (never waited for) and the oldest step's answer; True if anything came."""
        came = False
        while self.world.Iprobe(source=MPI.ANY_SOURCE, tag=PROGRESS_TAG):
            self.watch.mark(self.world.recv(source=MPI.ANY_SOURCE, tag=PROGRESS_TAG))
            came = True
        if self._inflight and self.world.Iprobe(source=1, tag=RESULT_TAG):
            self._answer(self.world.recv(source=1, tag=RESULT_TAG))
            came = True
        return came

    def _answer(self, answer: st.Answer) -> None:
        """The writers answer in the order they got the steps: the oldest in flight, by number."""
        oldest = next(iter(self._inflight))
        if not isinstance(answer, st.Answer) or answer.seq != oldest:
            got = answer.seq if isinstance(answer, st.Answer) else type(answer).__name__
            raise ChannelBroken(f"the writer ranks answered step #{got} while #{oldest} was expected")
        self.watch.answered(answer.seq)
        self._inflight.pop(oldest).set_result(answer.result)

    def _shutdown_writers(self, future: Future) -> None:
        while self._inflight:  # the answers of the steps in flight first
            if not self._receive_any():
                backoff(POLL_MIN_S)
        self._seq += 1
        data = pickle.dumps(st.Envelope(self._seq, st.Shutdown()))
        for rank in range(1, self.world.size):
            self.world.send(data, dest=rank, tag=STEP_TAG)
        future.set_result(st.StepResult(True))

    def _run_local(self) -> None:
        """N == 1: rank 0 is the writer, steps run here one after the other."""
        assert self._local is not None
        while True:
            step, future = self._queue.get()
            if isinstance(step, st.Shutdown):
                self._local.close_all()
                future.set_result(st.StepResult(True))
                return
            self._seq += 1
            self.watch.sent(self._seq, step)
            try:
                result = st.StepResult(True, value=self._local.execute(step))
            except Exception as e:
                result = st.StepResult(False, error=str(e))
            self.watch.answered(self._seq)
            future.set_result(result)
