"""RANK 0 ONLY: the single thread that drives the writer ranks.

Scan-writer threads (one per scan, several sessions) submit steps here; this thread sends them
to the writers in one global order and hands back the combined results, in the same order. Up to
`depth` steps are in flight: the writers find the next step already queued when they finish one,
so they never wait for rank 0 (whose polling latency is then hidden behind a whole step). With
N == 1 it executes the steps itself on COMM_SELF. No other rank-0 thread makes MPI calls, nor HDF5
calls other than the executor's own background thread storing compressed chunks (writers/direct/chunk_writer.py,
through h5py's lock).
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

from mpi4py import MPI

from ..protocol import steps as st
from ..protocol.mpi_roles import POLL_MIN_S, RESULT_TAG, STEP_TAG, backoff, wait_for_message

DEPTH = 2  # steps in flight to the writer ranks

log = logging.getLogger("nxpar.channel")


class StepError(RuntimeError):
    """A step failed on the writer ranks (the message says which and why)."""


class WriterChannel:
    def __init__(self, world: MPI.Intracomm, local_executor: Any = None, depth: int = DEPTH) -> None:
        """local_executor: what runs the steps when world.size == 1 (the service gives a
        writers.executor.StepExecutor on COMM_SELF, the unit tests a fake); unused otherwise."""
        self.world = world
        self.depth = max(depth, 1)
        self.nwriters = max(world.size - 1, 1)
        self._local = None
        if world.size == 1:
            if local_executor is None:
                raise ValueError("one process: rank 0 writes, so the channel needs a local executor")
            self._local = local_executor
        self._queue: queue.Queue[tuple[Any, Future]] = queue.Queue()
        self._lock = threading.Lock()  # _stopping and the queue change together
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="nxpar-writer-channel", daemon=True)
        self._thread.start()

    def submit(self, step: Any) -> Future:
        """Queue a step; its future gets the writers' StepResult. After shutdown() began, the
        future fails at once with StepError (nothing is queued behind Shutdown)."""
        future: Future = Future()
        with self._lock:
            if self._stopping:
                future.set_exception(StepError("writer service is shutting down"))
            else:
                self._queue.put((step, future))
        return future

    def call(self, step: Any) -> Any:
        """Submit and wait; raises StepError with the writers' reason."""
        result: st.StepResult = self.submit(step).result()
        if not result.ok:
            raise StepError(result.error)
        return result.value

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

    def _run(self) -> None:
        if self._local is not None:
            return self._run_local()
        inflight: collections.deque[tuple[Any, Future]] = collections.deque()
        sleep_s = POLL_MIN_S
        while True:
            if len(inflight) < self.depth:
                try:
                    step, future = self._queue.get(block=not inflight)
                except queue.Empty:
                    pass
                else:
                    if isinstance(step, st.Shutdown):
                        self._drain(inflight)
                        self._send(step)
                        future.set_result(st.StepResult(True))
                        return
                    try:
                        self._send(step)
                    except Exception as e:  # keep the channel alive whatever happens
                        log.exception("sending step %s failed", type(step).__name__)
                        future.set_result(st.StepResult(False, error=str(e)))
                    else:
                        inflight.append((step, future))
                    sleep_s = POLL_MIN_S
                    continue
            if self.world.Iprobe(source=1, tag=RESULT_TAG):
                self._receive(inflight)
                sleep_s = POLL_MIN_S
                continue
            sleep_s = backoff(sleep_s)  # sleep-poll: MPICH's blocking receive would spin a core

    def _send(self, step: Any) -> None:
        for rank in range(1, self.world.size):
            self.world.send(step, dest=rank, tag=STEP_TAG)

    def _receive(self, inflight: collections.deque) -> None:
        """The writers answer in the order they got the steps: the oldest in flight."""
        result = self.world.recv(source=1, tag=RESULT_TAG)
        _, future = inflight.popleft()
        future.set_result(result)

    def _drain(self, inflight: collections.deque) -> None:
        while inflight:
            wait_for_message(self.world, 1, RESULT_TAG)
            self._receive(inflight)

    def _run_local(self) -> None:
        """N == 1: rank 0 is the writer, steps run here one after the other."""
        assert self._local is not None
        while True:
            step, future = self._queue.get()
            if isinstance(step, st.Shutdown):
                self._local.close_all()
                future.set_result(st.StepResult(True))
                return
            try:
                result = st.StepResult(True, value=self._local.execute(step))
            except Exception as e:
                result = st.StepResult(False, error=str(e))
            future.set_result(result)
