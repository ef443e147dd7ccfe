"""The writer channel (driver/writer_channel.py) without MPI: one-process mode with a recording
executor, and the multi-rank mode over a fake COMM_WORLD that answers like the first writer rank."""
from __future__ import annotations

import collections
import pickle
import threading
import time
from concurrent.futures import wait

import pytest

from nxpar.driver.writer_channel import StepError, WriterChannel
from nxpar.protocol import steps as st
from nxpar.driver.stall_watch import StallLimits
from nxpar.protocol.mpi_roles import PROGRESS_TAG, RESULT_TAG, STEP_TAG
from tests.unit.fakes import one_process_channel, wait_until


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
    """COMM_WORLD of a 3-rank job seen from rank 0: ranks 1 and 2 get the (pickled, numbered) steps,
    rank 1 answers each step once both have it, naming its number. Records how many steps were in
    flight at most. `fail_send_to`: a rank whose send raises; `marks`: progress marks to deliver."""

    size = 3
    rank = 0

    def __init__(self, answers: bool = True) -> None:
        self.received: dict[int, list] = {1: [], 2: []}
        self.results: collections.deque = collections.deque()
        self.marks: collections.deque = collections.deque()
        self.max_inflight = 0
        self.answers = answers
        self.fail_send_to: int | None = None
        self.aborted: list[int] = []
        self._lock = threading.Lock()

    def send(self, data, dest: int, tag: int) -> None:
        assert tag == STEP_TAG and isinstance(data, bytes)
        if dest == self.fail_send_to:
            raise RuntimeError("connection reset")
        envelope = pickle.loads(data)
        with self._lock:
            self.received[dest].append(envelope.step)
            if dest == 2 and self.answers and not isinstance(envelope.step, st.Shutdown):
                ok = not isinstance(envelope.step, st.Flush)
                self.results.append(st.Answer(envelope.seq, st.StepResult(ok, error="failed on rank 2")))
                self.max_inflight = max(self.max_inflight, len(self.results))

    def Iprobe(self, source: int, tag: int) -> bool:  # noqa: N802 (mpi4py's name)
        with self._lock:
            if tag == PROGRESS_TAG:
                return bool(self.marks)
            assert (source, tag) == (1, RESULT_TAG)
            return bool(self.results)

    def recv(self, source: int, tag: int):
        with self._lock:
            return (self.marks if tag == PROGRESS_TAG else self.results).popleft()


def fake_channel(world: FakeWorld, limits: StallLimits | None = None) -> tuple[WriterChannel, list[str]]:
    aborts: list[str] = []
    return WriterChannel(world, limits=limits or StallLimits(), abort=aborts.append), aborts


def test_with_writer_ranks_every_rank_gets_every_step_in_order_two_in_flight_at_most():
    world = FakeWorld()
    channel, aborts = fake_channel(world)
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
    assert world.max_inflight <= 2 and not aborts


def test_an_answer_for_another_step_stops_the_job_and_answers_every_future():
    world = FakeWorld(answers=False)
    channel, aborts = fake_channel(world)
    first, second = channel.submit(st.Flush("a")), channel.submit(st.Flush("b"))
    wait_until(lambda: len(world.received[2]) == 2)
    world.results.append(st.Answer(2, st.StepResult(True)))  # #1 is the oldest in flight
    for future in (first, second):
        with pytest.raises(StepError, match="answered step #2 while #1 was expected"):
            future.result(5)
    wait_until(lambda: aborts)
    assert "answered step #2" in aborts[0]
    with pytest.raises(StepError, match="broke"):
        channel.call(st.Flush("c"))  # refused at once from now on


def test_a_step_that_reached_some_ranks_only_stops_the_job():
    world = FakeWorld()
    world.fail_send_to = 2
    channel, aborts = fake_channel(world)
    with pytest.raises(StepError, match="after ranks 1..1 got it"):
        channel.call(st.Flush("a"))
    wait_until(lambda: aborts)
    assert "writer rank 2 failed" in aborts[0] and len(world.received[1]) == 1


def test_a_step_that_cannot_be_pickled_fails_alone():
    world = FakeWorld()
    channel, aborts = fake_channel(world)
    with pytest.raises(StepError, match="cannot send step Tree"):
        channel.call(st.Tree("s", [st.Node("value", "/x", value=threading.Lock())]))
    assert channel.submit(st.Tree("s", [])).result(5).ok
    assert not aborts and not world.received[1][:-1]


def test_a_silent_writer_rank_is_named_then_the_job_is_restarted():
    world = FakeWorld(answers=False)
    channel, aborts = fake_channel(world, StallLimits(warn_s=0.3, restart_s=1.5))
    channel.watch.period_s = 0.05
    future = channel.submit(st.WriteBatch("scan-7", []))
    world.marks.extend([st.ProgressMark(1, 1, st.MarkKind.DONE), st.ProgressMark(1, 2, st.MarkKind.GOT)])
    wait_until(lambda: channel.stall_warning(), timeout=5)
    text = channel.stall_warning()
    assert "no answer for" in text and "step #1 (WriteBatch of scan-7)" in text
    assert "rank 1: done #1" in text and "rank 2: got #1" in text
    assert not aborts
    wait_until(lambda: aborts, timeout=5)
    assert "writer ranks stalled" in aborts[0]
    assert not future.done()  # the job is being stopped: the process ends with it


def test_a_hung_local_step_is_seen_too():
    channel, executor = one_process_channel()
    aborts: list[str] = []
    channel.watch.limits, channel.watch.on_restart, channel.watch.period_s = StallLimits(0.2, 0), aborts.append, 0.05
    channel.watch.start()
    executor.delay_s = 1.0
    future = channel.submit(st.Flush("s"))
    wait_until(lambda: channel.stall_warning(), timeout=5)
    assert future.result(5).ok
    assert channel.stall_warning() == "" and not aborts


def test_the_channel_thread_dying_answers_every_future_and_stops_the_job():
    world = FakeWorld(answers=False)
    channel, aborts = fake_channel(world)
    future = channel.submit(st.Flush("a"))
    wait_until(lambda: world.received[2])
    world.results.append("garbage")  # not an Answer: the thread raises
    with pytest.raises(StepError, match="broke"):
        future.result(5)
    wait_until(lambda: aborts)
