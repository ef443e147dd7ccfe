"""The CPU model of nxpar's write path: seconds of CPU per GiB of frames for each stage (measured by
`python -m perf stages`), and the throughput they project for a many-core machine. A projection,
not a measurement: the emulated box (`python -m perf scaling`) measures what this only estimates.

Steps follow nxpar's own tuning (nxpar/protocol/options.py `Tuning`): every writer rank reads and
writes up to `step_bytes_per_writer` per step (16 MiB by default: 8 frames of 1024² uint16), and one
step of rank 0 serves every writer rank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from nxpar.protocol.options import Tuning

GIB = 2**30
STEP_BYTES_PER_WRITER = Tuning().step_bytes_per_writer


def frames_per_step(frame_nbytes: int, step_bytes: int = STEP_BYTES_PER_WRITER) -> int:
    """Frames one writer rank takes per step (at least one)."""
    return max(step_bytes // frame_nbytes, 1)


@dataclass
class StageCosts:
    """CPU s per GiB of raw frames (agreement: CPU s per step and writer rank; rank 0: per step)."""

    scheme: str
    frame_nbytes: int
    redis_read_client: float
    redis_read_server: float
    redis_publish_server: float
    decode: float
    filter: float
    hdf5_write: float
    agreement_per_step: float
    rank0_per_step: float = float("nan")  # from the service runs, when measured
    step_bytes_per_writer: int = STEP_BYTES_PER_WRITER

    @property
    def steps_per_gib(self) -> float:
        """Steps a writer rank takes per GiB it writes."""
        return GIB / (frames_per_step(self.frame_nbytes, self.step_bytes_per_writer) * self.frame_nbytes)

    def agreement_per_gib(self) -> float:
        return self.agreement_per_step * self.steps_per_gib

    def writer_per_gib(self) -> float:
        """One writer rank, all its stages."""
        return self.redis_read_client + self.decode + self.filter + self.hdf5_write + self.agreement_per_gib()

    def rank0_per_gib(self, writers: int) -> float:
        """Rank 0: one step serves every writer rank."""
        return self.rank0_per_step * self.steps_per_gib / writers

    def rows(self) -> list[tuple[str, float]]:
        """(stage, CPU s per GiB) as the tables show them."""
        return [("Redis read, writer side (client)", self.redis_read_client),
                ("Redis read, server side (one Redis thread for all writers)", self.redis_read_server),
                ("Redis publish, server side (live)", self.redis_publish_server),
                ("decode (entries → numpy rows)", self.decode), (f"filter ({self.scheme})", self.filter),
                ("HDF5 write (mpio, collective, 1 rank, − the filter)", self.hdf5_write),
                (f"agreements ({self.agreement_per_step * 1e3:.2f} ms CPU per step and writer)",
                 self.agreement_per_gib()),
                ("one writer rank, all its stages", self.writer_per_gib())]


def project(c: StageCosts, cores: int, live: bool) -> dict[str, float]:
    """MB/s (MiB/s) that `cores` cores would give (cores − 1 writers + rank 0), from the stage costs:
    min(writers × one writer's rate, the Redis server's one thread, rank 0). Assumes Redis and BLISS on
    other machines, a file system that is not the limit, and per-step costs as measured with few ranks."""
    writers = max(cores - 1, 1)
    limits = {"writers (stages)": _per(writers, c.writer_per_gib()),
              "redis server": _per(1, c.redis_read_server + (c.redis_publish_server if live else 0.0)),
              "rank 0": _per(1, c.rank0_per_gib(writers))}
    out = {k: v * 1024 for k, v in limits.items()}
    out["projected (stages)"] = min(limits.values()) * 1024
    return out


def _per(cores: float, cpu_s_per_gib: float) -> float:
    """GiB/s that `cores` cores give at this cost (unbounded when the cost is zero or unknown)."""
    return cores / cpu_s_per_gib if cpu_s_per_gib > 0 else math.inf
