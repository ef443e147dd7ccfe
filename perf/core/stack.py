"""The stack every benchmark runs on: one Redis and one Tango database for the whole command
(launch/stack.py), writer services started and stopped by rank count, their processes found by
MPI rank, and each process put in its CPU slice when the command runs in slices.

    with bench_stack("frames", slices) as stack:
        service = stack.start_service("bench2", ranks=2)
        ...
        stack.stop_service(service)
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .box import Role
from .meter import Watched
from .slices import SliceSet

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Service:
    """One `mpirun -n RANKS NexusWriterService INSTANCE` (session = instance)."""

    instance: str
    ranks: int
    proxy: object
    pids: dict[int, int]  # MPI rank → pid
    watched: dict[str, Watched] = field(default_factory=dict)  # "rank0", "writer1", … with their slices

    @property
    def writers(self) -> int:
        return max(self.ranks - 1, 1)


def service_rank_pids(mpirun_pid: int) -> dict[int, int]:
    """MPI rank → pid of the ranks under one mpirun (PMI_RANK of each descendant)."""
    import psutil

    pids = {}
    for p in psutil.Process(mpirun_pid).children(recursive=True):
        try:
            rank = p.environ().get("PMI_RANK")
        except psutil.Error:
            continue
        if rank is not None:
            pids[int(rank)] = p.pid
    return dict(sorted(pids.items()))


class BenchStack:
    """Redis + Tango DB in a run directory, services on demand, slices applied if given."""

    def __init__(self, stack, rundir: Path, slices: SliceSet | None) -> None:
        self.stack, self.rundir, self.slices = stack, rundir, slices
        self.url = stack.env["REDIS_DATA_URL"]
        self.redis_pid = int((stack.rundir / "redis.pid").read_text())
        self.redis = Watched(self.redis_pid, slices.place(self.redis_pid, Role.REDIS) if slices else None)

    def start_service(self, instance: str, ranks: int, env: dict[str, str] | None = None,
                      properties: dict[str, object] | None = None, log_level: str = "WARNING",
                      timeout: float = 120) -> Service:
        dev = self.stack.register(instance, instance, **(properties or {}))
        self.stack.start_service(instance, ranks, log_level, extra_env=env)
        proxy = self.stack.wait_device(dev, timeout=timeout)
        mpirun = int((self.stack.rundir / f"service_{instance}.pid").read_text())
        pids = service_rank_pids(mpirun)
        if len(pids) != ranks:
            raise RuntimeError(f"service {instance}: found ranks {sorted(pids)}, expected {ranks}")
        service = Service(instance, ranks, proxy, pids)
        for rank, pid in pids.items():
            name, role = ("rank0", Role.RANK0) if rank == 0 else (f"writer{rank}", Role.WRITER)
            placed = self.slices.place(pid, role, f"{instance}-{name}") if self.slices else None
            service.watched[name] = Watched(pid, placed)
        return service

    def stop_service(self, service: Service) -> None:
        self.stack.stop_service(service.instance)

    def free_stream_data(self) -> None:
        """Drop every stream's data from Redis between runs (scans stay, their data goes)."""
        import redis

        client = redis.Redis.from_url(self.url)
        for key in client.scan_iter("esrf:stream:*"):
            client.delete(key)

    def frame_pool(self, shape: tuple[int, ...], dtype: str, count: int = 16) -> Path:
        """`count` realistic frames saved once in the run directory (children load them)."""
        path = self.rundir / f"frames_{'x'.join(map(str, shape))}_{dtype}_{count}.npy"
        if not path.exists():
            from launch.simulate import realistic_frames

            np.save(path, realistic_frames(count, tuple(shape), dtype))
        return path


@contextlib.contextmanager
def bench_stack(name: str, slices: SliceSet | None = None, keep: bool = False, redis_args: Sequence[str] = (),
                tango_db: bool = True) -> Iterator[BenchStack]:
    """One Redis and one Tango DB for the whole command (a client keeps the first TANGO_HOST it saw);
    stopped by PID and the run directory removed at the end (kept with keep=True). `redis_args` are
    added to Redis's command line (e.g. `--io-threads 4`); tango_db=False: Redis alone (no service
    can then be started)."""
    from launch.stack import Stack

    parent = ROOT / "run" if (ROOT / "run").exists() else None
    base = Path(tempfile.mkdtemp(prefix=f"nxpar-{name}-", dir=parent))
    stack = Stack(base / "stack")
    try:
        stack.start_redis(extra_args=redis_args)
        if tango_db:
            stack.start_tango_db()
        os.environ.update(stack.env)
        yield BenchStack(stack, base, slices)
    finally:
        stack.down()
        if keep:
            print(f"run directory kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
