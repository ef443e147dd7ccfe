"""Work done in a child process of its own, so that it has its own CPU accounting and, in slices, its
own slice: the publisher, the single-process baselines, the live followers.

    child = Child(target, arg1, arg2)      # target(channel, arg1, arg2) runs in a spawned process
    slices.place(child.pid, Role.BASELINE)  # before it has finished importing
    result = child.result(timeout=600)

The target talks back through its `Channel` (`send`) and may serve requests (`receive`); its return
value, or its exception's traceback, ends the conversation.
"""
from __future__ import annotations

import multiprocessing
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
_DONE, _ERROR, _MESSAGE = "done", "error", "message"


class ChildFailed(RuntimeError):
    pass


class Channel:
    """The child's end: messages to the parent, requests from it."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def send(self, value: Any) -> None:
        self._conn.send((_MESSAGE, value))

    def receive(self) -> Any:
        return self._conn.recv()

    put = send  # queue-like, for targets written for multiprocessing queues


def _main(conn, target: Callable[..., Any], args: tuple) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        result = target(Channel(conn), *args)
        conn.send((_DONE, result))
    except BaseException:  # noqa: BLE001 - everything goes back to the parent
        conn.send((_ERROR, traceback.format_exc()))


class Child:
    """A spawned process running `target(channel, *args)`."""

    def __init__(self, target: Callable[..., Any], *args: Any, name: str = "perf-child") -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=_main, args=(child_end, target, args), name=name, daemon=True)
        self.process.start()
        self.finished = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, value: Any) -> None:
        self._conn.send(value)

    def ready(self) -> bool:
        """A message or the result is waiting."""
        return self._conn.poll(0)

    def _next(self, timeout: float) -> tuple[str, Any]:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"{self.process.name}: nothing after {timeout} s")
        kind, value = self._conn.recv()
        if kind == _ERROR:
            self.finished = True
            raise ChildFailed(f"{self.process.name} failed:\n{value}")
        if kind == _DONE:
            self.finished = True
        return kind, value

    def message(self, timeout: float = 600) -> Any:
        """The next value the target sent."""
        kind, value = self._next(timeout)
        if kind != _MESSAGE:
            raise ChildFailed(f"{self.process.name} ended before sending")
        return value

    def result(self, timeout: float = 600) -> Any:
        """The target's return value (messages before it are skipped)."""
        while True:
            kind, value = self._next(timeout)
            if kind == _DONE:
                self.process.join(10)
                return value

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
