"""What a benchmark measures on every process it watches, between `start()` and `stop()`: CPU seconds
from the kernel's accounting, peak RSS, and, in CPU slices, how often the slice was throttled.

CPU: the slice's cpuacct.usage when the process has its own slice (ns, exited threads included),
else utime + stime of /proc/PID/stat (clock ticks; the kernel keeps the time of exited threads there
too). Peak RSS: the kernel's high-water mark (VmHWM), reset at start() by writing 5 to
/proc/PID/clear_refs (root; otherwise the peak since the process started).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .slices import CpuSlice, Throttling

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process, all its threads (exited ones included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def threads_cpu_s(pid: int) -> float:
    """CPU seconds of the live threads of a process, in ns resolution (schedstat): for short
    measurements of long-lived threads (Redis), where clock ticks would swamp the figure."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread ended meanwhile
    return total / 1e9


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Watched:
    """One process the meter follows (its slice, if it has one of its own)."""

    pid: int
    slice: CpuSlice | None = None

    def cpu_s(self) -> float:
        usage = self.slice.usage_s() if self.slice is not None else None
        if usage is not None:
            return usage
        try:
            return proc_cpu_s(self.pid)
        except OSError:
            return float("nan")


@dataclass
class Use:
    """What one process used between start() and stop()."""

    cpu_s: float
    peak_rss_mb: float
    periods: int | None = None
    throttled: int | None = None
    throttled_s: float | None = None


@dataclass
class Meter:
    """CPU, peak RSS and throttling of named processes between start() and stop()."""

    procs: dict[str, Watched]
    _cpu0: dict[str, float] = field(default_factory=dict)
    _thr0: dict[str, Throttling] = field(default_factory=dict)
    wall_s: float = 0.0

    def start(self) -> None:
        for w in self.procs.values():
            reset_peak_rss(w.pid)
        self._thr0 = {n: w.slice.throttling() for n, w in self.procs.items() if w.slice is not None}
        self._cpu0 = {n: w.cpu_s() for n, w in self.procs.items()}
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, Use]:
        self.wall_s = time.perf_counter() - self._t0
        out = {}
        for name, w in self.procs.items():
            try:
                rss = peak_rss_mb(w.pid)
            except OSError:
                rss = float("nan")
            use = Use(w.cpu_s() - self._cpu0[name], rss)
            if name in self._thr0:
                t = w.slice.throttling().minus(self._thr0[name])
                use.periods, use.throttled, use.throttled_s = t.periods, t.throttled, t.throttled_s
            out[name] = use
        return out


class IdleCores:
    """The machine's idle (or iowait) CPU seconds, all cores together, from /proc/stat: sampled like a
    process, its rate is the number of idle cores."""

    def __init__(self, column: int = 3) -> None:  # 3: idle, 4: iowait
        self.column = column

    def cpu_s(self) -> float:
        with open("/proc/stat") as fh:
            return int(fh.readline().split()[1:][self.column]) * TICK_S


class Sampler(threading.Thread):
    """Cores used by each process (anything with cpu_s()) over every `period_s`, for timelines."""

    def __init__(self, procs: dict[str, Watched | IdleCores], period_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.procs, self.period_s = procs, period_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        t_prev, prev = time.perf_counter(), {n: w.cpu_s() for n, w in self.procs.items()}
        while not self._halt.wait(self.period_s):
            t, cur = time.perf_counter(), {n: w.cpu_s() for n, w in self.procs.items()}
            self.samples.append((t, {n: (cur[n] - prev[n]) / (t - t_prev) for n in cur}))
            t_prev, prev = t, cur

    def stop(self) -> list[tuple[float, dict[str, float]]]:
        self._halt.set()
        self.join()
        return self.samples
