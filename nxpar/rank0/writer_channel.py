"""RANK 0 ONLY: the single thread that drives the writer ranks.

Scan-writer threads (one per scan, several sessions) submit steps here; this thread sends them
to the writers one at a time, in one global order, and hands back the combined result. With
N == 1 it executes the steps itself on COMM_SELF. No other rank-0 thread makes MPI or HDF5 calls.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

from mpi4py import MPI

from .. import steps as st
from ..mpi_roles import RESULT_TAG, STEP_TAG, wait_for_message

log = logging.getLogger("nxpar.channel")


class StepError(RuntimeError):
    """A step failed on the writer ranks (the message says which and why)."""


class WriterChannel:
    def __init__(self, world: MPI.Intracomm, local_writers: MPI.Intracomm | None) -> None:
        self.world = world
        self.nwriters = max(world.size - 1, 1)
        self._local = None
        if world.size == 1:
            from ..collective.executor import CollectiveExecutor

            self._local = CollectiveExecutor(local_writers or MPI.COMM_SELF)
        self._queue: queue.Queue[tuple[Any, Future]] = queue.Queue()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="nxpar-writer-channel", daemon=True)
        self._thread.start()

    def submit(self, step: Any) -> Future:
        future: Future = Future()
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
        done = self.submit(st.Shutdown())
        self._stopping = True
        try:
            done.result(timeout=timeout)
        except Exception:
            log.warning("writer ranks did not acknowledge shutdown", exc_info=True)

    def _run(self) -> None:
        while True:
            step, future = self._queue.get()
            try:
                result = self._execute(step)
            except Exception as e:  # keep the channel alive whatever happens
                log.exception("step %s failed on rank 0", type(step).__name__)
                result = st.StepResult(False, error=str(e))
            future.set_result(result)
            if isinstance(step, st.Shutdown):
                return

    def _execute(self, step: Any) -> st.StepResult:
        if self._local is not None:
            if isinstance(step, st.Shutdown):
                self._local.close_all()
                return st.StepResult(True)
            try:
                return st.StepResult(True, value=self._local.execute(step))
            except Exception as e:
                return st.StepResult(False, error=str(e))
        for rank in range(1, self.world.size):
            self.world.send(step, dest=rank, tag=STEP_TAG)
        if isinstance(step, st.Shutdown):
            return st.StepResult(True)
        wait_for_message(self.world, 1, RESULT_TAG)
        return self.world.recv(source=1, tag=RESULT_TAG)
