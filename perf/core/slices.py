"""CPU slices: one cgroup (v1) per benchmarked process, so that on a 2-core machine the publisher,
Redis, rank 0 and every writer rank each get their own share of a core (perf/core/box.py says whose).

Each slice is a directory `nxpar-bench-<owner pid>-<name>` in the `cpu` hierarchy (quota:
cpu.cfs_quota_us / cpu.cfs_period_us; throttling: cpu.stat) and in the `cpuacct` hierarchy (CPU time
of every task ever in it, exited threads included: cpuacct.usage, in ns). Writing a PID to
cgroup.procs moves the whole process; threads and children it starts later follow.

`SliceSet` removes its slices when the run ends, fails, or is stopped by Ctrl-C or SIGTERM (tasks
still inside go back to the root group first); `remove_stale` removes what a killed run left.
Needs root and the v1 cpu controller; `unavailable()` says why not, and the benchmarks then refuse
--slices instead of measuring something else.
"""
from __future__ import annotations

import atexit
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from .box import Role, SliceSpec

CPU = Path("/sys/fs/cgroup/cpu")
CPUACCT = Path("/sys/fs/cgroup/cpuacct")
PREFIX = "nxpar-bench-"


def unavailable() -> str:
    """'' when slices can be made here, else why not."""
    if os.geteuid() != 0:
        return "CPU slices need root (cgroup v1 cpu controller)"
    if not (CPU / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 cpu controller at {CPU}"
    if not os.access(CPU, os.W_OK):
        return f"{CPU} is not writable"
    return ""


@dataclass(frozen=True)
class Throttling:
    """cpu.stat: enforcement periods, how many of them throttled the slice, and for how long."""

    periods: int
    throttled: int
    throttled_s: float

    def minus(self, before: "Throttling") -> "Throttling":
        return Throttling(self.periods - before.periods, self.throttled - before.throttled,
                          self.throttled_s - before.throttled_s)


def _move_to_root(group: Path, root: Path) -> None:
    try:
        pids = (group / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        try:
            (root / "cgroup.procs").write_text(pid)
        except OSError:
            pass  # gone meanwhile


class CpuSlice:
    """One slice: a cgroup in cpu and cpuacct, created on construction."""

    def __init__(self, name: str, period_us: int) -> None:
        self.name = name
        self.dirs = (CPU / name, CPUACCT / name if CPUACCT.exists() else None)
        for d in self.dirs:
            if d is not None:
                d.mkdir(exist_ok=True)
        (self.dirs[0] / "cpu.cfs_period_us").write_text(str(period_us))
        self.quota_us: int | None = None

    def set_quota(self, quota_us: int | None) -> None:
        (self.dirs[0] / "cpu.cfs_quota_us").write_text(str(-1 if quota_us is None else quota_us))
        self.quota_us = quota_us

    def add(self, pid: int) -> None:
        for d in self.dirs:
            if d is not None:
                (d / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return [int(p) for p in (self.dirs[0] / "cgroup.procs").read_text().split()]

    def usage_s(self) -> float | None:
        """CPU seconds of everything that ran in the slice (None without cpuacct)."""
        acct = self.dirs[1]
        return int((acct / "cpuacct.usage").read_text()) / 1e9 if acct is not None else None

    def throttling(self) -> Throttling:
        stat = dict(line.split() for line in (self.dirs[0] / "cpu.stat").read_text().splitlines())
        return Throttling(int(stat["nr_periods"]), int(stat["nr_throttled"]), int(stat["throttled_time"]) / 1e9)

    def remove(self) -> None:
        for d, root in zip(self.dirs, (CPU, CPUACCT)):
            if d is None or not d.exists():
                continue
            _move_to_root(d, root)
            try:
                d.rmdir()
            except OSError:  # a task still leaving; one more pass
                _move_to_root(d, root)
                d.rmdir()


class SliceSet:
    """The slices of one benchmark run, named by role (`place`) or freely (`slice`), removed on exit."""

    def __init__(self, spec: SliceSpec) -> None:
        why = unavailable()
        if why:
            raise RuntimeError(f"--slices: {why}")
        self.spec = spec
        self.slices: dict[str, CpuSlice] = {}
        self.roles: dict[str, Role] = {}  # slices placed by role: requota() gives them a new spec's quota
        self._owner = os.getpid()

    def __enter__(self) -> "SliceSet":
        remove_stale()
        atexit.register(self.remove)
        self._previous = signal.signal(signal.SIGTERM, _raise_exit)
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
        signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)

    def slice(self, name: str, quota_us: int | None) -> CpuSlice:
        """The slice `name`, created if new, with this quota."""
        if name not in self.slices:
            self.slices[name] = CpuSlice(f"{PREFIX}{self._owner}-{name}", self.spec.period_us)
        self.slices[name].set_quota(quota_us)
        return self.slices[name]

    def place(self, pid: int, role: Role, name: str | None = None) -> CpuSlice:
        """Move process `pid` into its own slice (`name`, default the role's) with the role's quota."""
        name = name or role.value
        s = self.slice(name, self.spec.quota_us(role))
        self.roles[name] = role
        s.add(pid)
        return s

    def requota(self, spec: SliceSpec) -> None:
        """Every slice placed by role gets its role's quota in `spec` (the period stays)."""
        self.spec = spec
        for name, role in self.roles.items():
            self.slices[name].set_quota(spec.quota_us(role))

    def throttling(self) -> dict[str, Throttling]:
        return {name: s.throttling() for name, s in self.slices.items()}

    def remove(self) -> None:
        for s in self.slices.values():
            s.remove()
        self.slices.clear()
        self.roles.clear()


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def remove_stale() -> list[str]:
    """Remove the slices of benchmark runs whose process is gone; the names removed."""
    removed = []
    for d in list(CPU.glob(PREFIX + "*")) + list(CPUACCT.glob(PREFIX + "*")):
        owner = d.name[len(PREFIX):].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _move_to_root(d, CPU if d.parent == CPU else CPUACCT)
            try:
                d.rmdir()
                removed.append(d.name)
            except OSError:
                pass
    return removed
