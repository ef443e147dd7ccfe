"""RANK 0 ONLY: a closed scan file made durable off the scan's critical path.

blisswriter never fsyncs: a scan is done for BLISS as soon as its file is closed. nxpar does the same
(the device shows OFF at once), then, in one background thread per service, fsyncs the closed file and
only then takes the scan out of the journal. A host that crashes before the fsync leaves the scan in the
journal, so the restarted service writes it again from Redis (driver/resume.py): the scan ends on disk
whole either way, and the fsync costs the end of a scan nothing.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Callable

log = logging.getLogger("nxpar.durability")


class Durability:
    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, Callable[[], None]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def after_close(self, path: str, then: Callable[[], None]) -> None:
        """fsync `path` (a closed file), then call `then` (the journal forgets the scan)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="nxpar-durability", daemon=True)
                self._thread.start()
        self._queue.put((path, then))

    def drain(self, timeout: float | None = None) -> None:
        """Until every file queued so far is synced (service shutdown, tests); at once if none ever was."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                return
        done = threading.Event()
        self._queue.put(("", done.set))
        done.wait(timeout)

    def _run(self) -> None:
        while True:
            path, then = self._queue.get()
            if path:
                sync(path)
            try:
                then()
            except Exception:  # a journal that cannot be written is its own warning
                log.warning("after syncing %s", path or "(drain)", exc_info=True)


def sync(path: str) -> None:
    """The file's bytes on disk (a file that is gone has nothing left to sync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        log.warning("fsync of %s failed: %s", path, e)
    finally:
        os.close(fd)


DURABILITY = Durability()  # one per process: every session and route queues its closed files here


def forget_when_durable(journal, key: str, path: str, durability: "Durability | None") -> None:
    """journal.remove(key), after `path` (a closed scan file, '' if none) is fsynced by `durability`;
    at once without one (or without a file)."""
    forget = lambda: journal.remove(key)  # noqa: E731
    if path and durability is not None:
        durability.after_close(path, forget)
    else:
        forget()
