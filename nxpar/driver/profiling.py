"""RANK 0 ONLY: resource profiling of scan writers (the device's `resource_profiling` attribute).

CPUnn / WALLnn: cProfile of every profiled scan-writer thread (CPU or wall clock), merged into one
report of the top nn entries; MEMnn: tracemalloc, top nn lines. Process wide: the profiler is on
while at least one profiled writer runs; the report is logged when the last one ends.
"""
from __future__ import annotations

import cProfile
import io
import logging
import pstats
import threading
import time
import tracemalloc
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("nxpar.profiling")


class ProcessProfiler:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._stats: pstats.Stats | None = None

    @contextmanager
    def profile(self, mode: str, label: str) -> Iterator[None]:
        """Profile the calling thread's block (a scan writer's whole life)."""
        if mode == "OFF":
            yield
            return
        kind, top = mode.rstrip("0123456789"), int(mode.lstrip("CPUWALME"))
        with self._lock:
            if self._active == 0:
                self._stats = None
                if kind == "MEM":
                    tracemalloc.start()
            self._active += 1
        profiler = None
        if kind in ("CPU", "WALL"):
            profiler = cProfile.Profile(time.process_time if kind == "CPU" else time.perf_counter)
            profiler.enable()
        try:
            yield
        finally:
            if profiler is not None:
                profiler.disable()
            with self._lock:
                if profiler is not None:
                    if self._stats is None:
                        self._stats = pstats.Stats(profiler)
                    else:
                        self._stats.add(profiler)
                self._active -= 1
                if self._active == 0:
                    self._report(kind, top, label)

    def _report(self, kind: str, top: int, label: str) -> None:
        if kind == "MEM":
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            lines = [str(stat) for stat in snapshot.statistics("lineno")[:top]]
            log.warning("memory profile (tracemalloc, top %d lines, last writer %s):\n%s", top, label, "\n".join(lines))
        elif self._stats is not None:
            out = io.StringIO()
            self._stats.stream = out
            self._stats.sort_stats("cumulative").print_stats(top)
            log.warning("%s profile (cProfile, top %d, last writer %s):\n%s", kind, top, label, out.getvalue())


PROFILER = ProcessProfiler()


def log_resources(logger: logging.Logger) -> None:
    """One line of process resources (threads, fds, memory): for the profiling attribute."""
    import psutil

    proc = psutil.Process()
    logger.warning("resources: %d threads, %d fds, RSS %.1f MB", threading.active_count(),
                   proc.num_fds(), proc.memory_info().rss / 1024**2)
