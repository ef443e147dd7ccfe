"""The writer channel (driver/writer_channel.py) without MPI: one-process mode with a recording
executor, and the multi-rank mode over a fake COMM_WORLD that answers like the first writer rank."""
from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import wait

import pytest

from nxpar.driver.writer_channel import StepError, WriterChannel
from nxpar.protocol import steps as st
from nxpar.protocol.mpi_roles import RESULT_TAG, STEP_TAG
from tests.unit.fakes import one_process_channel


def test_steps_run_in_submission_order_and_failures_come_back_as_step_errors():
    channel, executor = one_process_channel()
    executor.fail[st.Flush] = "disk full"
    futures = [channel.submit(st.Tree(f"s{i}", [])) for i in range(5)]
    assert [f.result(5).ok for f in futures] == [True] * 5
    with pytest.raises(StepError, match="disk full"):
        channel.call(st.Flush("s0"))
    assert [s.scan_id for s in executor.of(st.Tree)] == [f"s{i}" for i in range(5)]
    channel.shutdown(timeout=5)
    assert executor.closed_all


def test_every_step_submitted_around_a_shutdown_is_answered():
    """A step submitted while shutdown() runs either runs before Shutdown or fails at once."""
    channel, executor = one_process_channel()
    futures, stop = [], threading.Event()

    def submitter() -> None:
        while not stop.is_set():
            futures.append(channel.submit(st.Flush("s")))
            time.sleep(0.0001)

    threads = [threading.Thread(target=submitter) for _ in range(3)]
    for t in threads:
        t.start()
    while len(futures) < 50:
        time.sleep(0.001)
    channel.shutdown(timeout=10)
    stop.set()
    for t in threads:
        t.join()
    done, pending = wait(futures, timeout=10)
    assert not pending, f"{len(pending)} steps never answered"
    refused = [f for f in futures if f.exception() is not None]
    assert refused and all(isinstance(f.exception(), StepError) for f in refused)
    assert len(executor.of(st.Flush)) == len(futures) - len(refused)
    assert executor.closed_all


class FakeWorld:
    """COMM_WORLD of a 3-rank job seen from rank 0: ranks 1 and 2 get the steps, rank 1 answers
    each step once both have it. Records how many steps were in flight at most."""

    size = 3
    rank = 0

    def __init__(self) -> None:
        self.received: dict[int, list] = {1: [], 2: []}
        self.results: collections.deque = collections.deque()
        self.max_inflight = 0
        self._lock = threading.Lock()

    def send(self, step, dest: int, tag: int) -> None:
        assert tag == STEP_TAG
        with self._lock:
            self.received[dest].append(step)
            if dest == 2:
                self.results.append(st.StepResult(not isinstance(step, st.Flush), error="failed on rank 2"))
                self.max_inflight = max(self.max_inflight, len(self.results))

    def Iprobe(self, source: int, tag: int) -> bool:  # noqa: N802 (mpi4py's name)
        assert (source, tag) == (1, RESULT_TAG)
        with self._lock:
            return bool(self.results)

    def recv(self, source: int, tag: int):
        with self._lock:
            return self.results.popleft()


def test_with_writer_ranks_every_rank_gets_every_step_in_order_two_in_flight_at_most():
    world = FakeWorld()
    channel = WriterChannel(world)
    assert channel.nwriters == 2
    futures = [channel.submit(st.Tree(f"s{i}", [])) for i in range(20)]
    assert all(f.result(5).ok for f in futures)
    with pytest.raises(StepError, match="failed on rank 2"):
        channel.call(st.Flush("s"))
    channel.shutdown(timeout=5)
    for rank in (1, 2):
        steps = world.received[rank]
        assert [s.scan_id for s in steps[:20]] == [f"s{i}" for i in range(20)]
        assert isinstance(steps[-1], st.Shutdown)
    assert world.max_inflight <= 2
