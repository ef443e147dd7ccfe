"""Fakes at the MPI and Redis boundary of rank 0, for the driver's unit tests (never elsewhere).

`RecordingExecutor` stands for the writer ranks behind a one-process WriterChannel (the real
channel runs): it records every step and fails the ones a test asks to fail. `FakeSource` stands
for blissdata/Redis behind `ScanSource`: the test publishes rows and moves the scan's state.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from blissdata.redis_engine.scan import ScanState

from nxpar.driver.scan_source import StreamDescription
from nxpar.driver.writer_channel import WriterChannel
from nxpar.protocol import steps as st


class OneProcessWorld:
    """What WriterChannel reads of COMM_WORLD when the job has one process."""

    size = 1
    rank = 0


class RecordingExecutor:
    def __init__(self) -> None:
        self.steps: list[Any] = []
        self.fail: dict[type, str] = {}  # step type → error the writers report
        self.closed_all = False
        self.delay_s = 0.0

    def execute(self, step: Any) -> None:
        self.steps.append(step)
        time.sleep(self.delay_s)
        error = self.fail.get(type(step))
        if error:
            raise RuntimeError(error)

    def close_all(self) -> None:
        self.closed_all = True

    def of(self, kind: type) -> list[Any]:
        return [s for s in self.steps if isinstance(s, kind)]

    def names(self) -> list[str]:
        return [type(s).__name__ for s in self.steps]


def one_process_channel(executor: RecordingExecutor | None = None) -> tuple[WriterChannel, RecordingExecutor]:
    executor = executor or RecordingExecutor()
    return WriterChannel(OneProcessWorld(), executor), executor


class FakeSource:
    """A scan in "Redis": row streams of fixed dtype/shape; the test publishes and closes it."""

    key = "esrf:scan:fake"

    def __init__(self, info: dict[str, Any], shapes: dict[str, tuple[str, tuple[int, ...]]]) -> None:
        self.info = info
        self.shapes = shapes
        self.state = ScanState.CREATED
        self.reachable = ScanState.PREPARED  # wait_for() reaches states up to this one
        self.available = {name: 0 for name in shapes}
        self.sealed = {name: False for name in shapes}
        self.check_stop = lambda: None
        self._lock = threading.Lock()

    # what the test does
    def publish(self, count: int, seal: bool = False) -> None:
        with self._lock:
            for name in self.available:
                self.available[name] += count
                self.sealed[name] = seal

    def close(self) -> None:
        self.publish(0, seal=True)
        self.reachable = ScanState.CLOSED

    # the ScanSource interface
    def wait_for(self, state: ScanState) -> None:
        while self.state < state:
            self.check_stop()
            if state <= self.reachable:
                self.state = state
            else:
                time.sleep(0.005)

    def sleep_until_change(self, timeout: float) -> None:
        time.sleep(timeout)

    def refresh(self) -> None:
        pass

    def final_info(self) -> dict[str, Any]:
        return dict(self.info) if self.state >= ScanState.CLOSED else {}

    def streams(self) -> list[StreamDescription]:
        return [StreamDescription(name, "array", None) for name in self.shapes]

    def dtype_shape(self, name: str) -> tuple[str, tuple[int, ...]]:
        return self.shapes[name]

    def lengths(self, names: list[str]) -> dict[str, tuple[int, bool]]:
        with self._lock:
            return {n: (self.available[n], self.sealed[n]) for n in names}

    def values(self, name: str, count: int) -> np.ndarray:
        return np.arange(count, dtype=float)


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.005)


def shapes_of(info: dict[str, Any], image: tuple[int, int] | None = None) -> dict[str, tuple[str, tuple[int, ...]]]:
    """float64 scalars for every 0D channel of scan_info, spectra of 128, uint16 frames of `image`."""
    out = {}
    for name, ch in info["channels"].items():
        dim = ch.get("dim", 0)
        out[name] = ("float64", ()) if dim == 0 else ("float32", (128,)) if dim == 1 else ("uint16", image or (8, 8))
    return out


def rows_written(executor: RecordingExecutor) -> dict[str, int]:
    """The rows each dataset got, from the WriteBatch steps (their row ranges must follow on)."""
    end: dict[str, int] = {}
    for batch in executor.of(st.WriteBatch):
        for w in batch.writes:
            assert w.start == end.get(w.spec.path, 0), "row ranges of a dataset follow on without gap"
            end[w.spec.path] = w.stop
    return end
