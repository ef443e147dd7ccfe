"""Who gets which slice of a core: the emulated machine, as data (no cgroup here: perf/core/slices.py
applies it).

A `SliceSpec` gives each role a CPU quota in real cores, or None (not limited):

    publisher=0.4,redis=0.3,rank0=0.2,writer=0.2            each role by hand (writer: every writer rank)
    16x0.1                                                   an emulated 16-core box: 16 cores of 0.1 real core

An emulated N-core box (`EmulatedBox`) is the writer machine scaled down: rank 0 and every writer rank
get one emulated core each (N ranks: rank 0 + N-1 writers), Redis one (it is one thread), BLISS's
publisher `publisher_cores` of them (it runs elsewhere at a beamline), and the single-process
baseline one, like a writer rank. Every figure measured in it is then about `core` × the figure of the
real N-core machine, as long as what binds is CPU (perf/SCALING.md: what the emulation does not scale).
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, fields, replace

DEFAULT_PERIOD_US = 20_000
MIN_QUOTA_US = 1_000  # the kernel's minimum cfs quota


class Role(str, enum.Enum):
    PUBLISHER = "publisher"
    REDIS = "redis"
    RANK0 = "rank0"
    WRITER = "writer"
    BASELINE = "baseline"  # the single-process writer (blisswriter's design) and other baselines


@dataclass(frozen=True)
class SliceSpec:
    """CPU quota per role, in real cores (None: not limited)."""

    publisher: float | None = None
    redis: float | None = None
    rank0: float | None = None
    writer: float | None = None
    baseline: float | None = None
    period_us: int = DEFAULT_PERIOD_US
    label: str = ""

    def quota(self, role: Role) -> float | None:
        return getattr(self, role.value)

    def quota_us(self, role: Role) -> int | None:
        cores = self.quota(role)
        return None if cores is None else max(int(round(cores * self.period_us)), MIN_QUOTA_US)

    def describe(self) -> str:
        parts = [f"{r.value} {self.quota(r):g}" for r in Role if self.quota(r) is not None]
        return (self.label + ": " if self.label else "") + ", ".join(parts) + f" (period {self.period_us // 1000} ms)"

    @classmethod
    def parse(cls, text: str) -> "SliceSpec":
        """'16x0.1' (an emulated box) or 'publisher=0.4,redis=0.3,rank0=0.2,writer=0.2[,baseline=..][,period=20]'
        (period in ms)."""
        box = re.fullmatch(r"(\d+)x([\d.]+)(?:,publisher=([\d.]+))?", text.strip())
        if box:
            publisher = float(box.group(3)) if box.group(3) else EmulatedBox.publisher_cores
            return EmulatedBox(int(box.group(1)), float(box.group(2)), publisher).slices()
        values: dict[str, object] = {}
        names = {f.name for f in fields(cls)} - {"label", "period_us"}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, _, value = item.partition("=")
            if key == "period":
                values["period_us"] = int(float(value) * 1000)
            elif key in names:
                values[key] = float(value)
            else:
                raise ValueError(f"unknown slice role {key!r} in {text!r} (roles: {', '.join(sorted(names))})")
        spec = cls(**values)  # type: ignore[arg-type]
        return spec if spec.baseline is not None else replace(spec, baseline=spec.writer)

    def total(self, writers: int, live: bool) -> float:
        """Real cores the quotas add up to with `writers` writer ranks (publisher counted only live)."""
        parts = [self.redis, self.rank0] + [self.writer] * writers + ([self.publisher] if live else [])
        return sum(p for p in parts if p is not None)


@dataclass(frozen=True)
class EmulatedBox:
    """An N-core writer machine whose cores are each `core` of a real core."""

    cores: int
    core: float
    publisher_cores: float = 2.0  # emulated cores given to BLISS's publisher
    redis_cores: float = 1.0

    @property
    def writers(self) -> int:
        """Writer ranks that fill the box: one core for rank 0, one per writer rank."""
        return max(self.cores - 1, 1)

    @property
    def name(self) -> str:
        return f"{self.cores}x{self.core:g}"

    def slices(self) -> SliceSpec:
        return SliceSpec(publisher=self.publisher_cores * self.core, redis=self.redis_cores * self.core,
                         rank0=self.core, writer=self.core, baseline=self.core,
                         label=f"emulated {self.cores}-core box, {self.core:g} real core each")

    @classmethod
    def fitting(cls, cores: int, budget: float, publisher_cores: float = 2.0) -> "EmulatedBox":
        """The box of `cores` cores whose every process fits in `budget` real cores when all are busy
        (rank 0, the writers, Redis and the publisher), rounded down to 0.005 core."""
        units = cores + 1.0 + publisher_cores
        return cls(cores, int(budget / units / 0.005) * 0.005, publisher_cores)

    def writer_counts(self) -> list[int]:
        """1, 2, 4, … below the box's size, and the box's full count."""
        counts, n = [], 1
        while n < self.writers:
            counts.append(n)
            n *= 2
        return counts + [self.writers]
