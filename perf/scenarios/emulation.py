"""emulation: does a CPU slice behave like a smaller core? The checks behind perf/SCALING.md's limits.

    python -m perf emulation                      # ~1 min
    python -m perf emulation --seconds 1 --quotas 0.25

1. A CPU-bound process (sha256 of 1 MiB blocks, one thread) unlimited, then at each quota q (and at
   q = the smallest with a 100 ms period): its rate against q × its work per CPU-second unlimited.
2. An MPI rank waiting for another (mpirun -n 2, perf/probes.py mpi-wait): in MPI_Barrier (busy-polling,
   as inside HDF5's collectives), with MPIR_CVAR_POLLS_BEFORE_YIELD=1 (MPICH yields the processor
   every poll loop), and in nxpar's sleep-polled agreement; unlimited and in a slice: the CPU it burns
   while waiting and how late it wakes after the other rank arrives.
3. What the slices do not scale: fdatasync'd writes to disk, writes to the page cache, memory copies,
   unlimited and in a slice (MB/s and MB per CPU-second).
4. Neighbours: 1, 2, 4 and 7 processes compressing frames as nxpar's writer ranks do (byte-shuffled
   512² uint16 frames, zlib level 4) at once, each in its own slice of 0.2 core: the work each does per
   CPU-second against one alone. Cores shared by busy neighbours (caches, memory bandwidth, the host's
   other tenants) make a CPU-second do less: what "N writers ≥ 0.8 × N × one writer" can reach here.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ..core.child import Channel, Child
from ..core.results import ROOT, Document
from ..core.slices import CpuSlice, SliceSet
from ..probes import run as run_probe

SLICES = False
BLOCK = b"\x5a" * (1 << 20)


def add_arguments(p) -> None:
    p.add_argument("--seconds", type=float, default=2.0, help="length of each CPU-bound run and MPI wait")
    p.add_argument("--quotas", type=float, nargs="+", default=[0.5, 0.25, 0.1])
    p.add_argument("--period-ms", type=int, default=20)


def _cpu_bound(channel: Channel, seconds: float) -> dict[str, float]:
    time.sleep(0.2)  # placed in its slice meanwhile
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        hashlib.sha256(BLOCK).digest()
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "rate": n / wall, "work_per_cpu_s": n / cpu}


def _unscaled(channel: Channel, what: str, path: str, mb: int) -> dict[str, float]:
    import numpy as np

    time.sleep(0.2)
    block = np.random.default_rng(0).integers(0, 255, 1 << 20, dtype=np.uint8)
    t0, c0 = time.perf_counter(), time.process_time()
    if what == "memory copy":
        src, dst = np.tile(block, mb), np.empty(mb << 20, np.uint8)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(4):
            np.copyto(dst, src)
        mb *= 4
    else:
        with open(path, "wb") as fh:
            for _ in range(mb):
                fh.write(block.tobytes())
            if what == "disk (fdatasync)":
                fh.flush()
                os.fdatasync(fh.fileno())
        os.unlink(path)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"mb_per_s": mb / wall, "mb_per_cpu_s": mb / max(cpu, 1e-6)}


def _frame_block() -> bytes:
    import numpy as np

    rng = np.random.default_rng(0)
    frame = (np.add.outer(np.arange(512), np.arange(512)) // 8 + rng.poisson(30, (512, 512))).astype("<u2")
    return frame.view(np.uint8).reshape(-1, 2).T.copy().tobytes()  # byte-shuffled, as the filter does


def _compress_bound(channel: Channel, seconds: float) -> dict[str, float]:
    import zlib

    block = _frame_block()
    time.sleep(0.5)  # placed in its slice, and the neighbours started, meanwhile
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        zlib.compress(block, 4)
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "mb_per_cpu_s": n * len(block) / 1e6 / cpu}


def in_slice(target, *args, slice_: CpuSlice | None):
    child = Child(target, *args, name=target.__name__.strip("_"))
    if slice_ is not None:
        slice_.add(child.pid)
    try:
        return child.result(600)
    finally:
        child.stop()


def quota_checks(slices: SliceSet, args, doc: Document) -> None:
    cases = [(None, args.period_ms)] + [(q, args.period_ms) for q in args.quotas] + [(min(args.quotas), 100)]
    for n, (quota, period_ms) in enumerate(cases):
        s = None
        if quota is not None:
            s = CpuSlice(f"{slices.slice('probe', None).name}-{n}", period_ms * 1000)
            slices.slices[f"probe{n}"] = s
            s.set_quota(int(quota * period_ms * 1000))
        thr0 = s.throttling() if s else None
        r = in_slice(_cpu_bound, args.seconds, slice_=s)
        throttled = f"{s.throttling().minus(thr0).throttled}/{s.throttling().minus(thr0).periods}" if s else "-"
        doc.add("cpu-bound", quota=quota, period_ms=period_ms, throttled=throttled, **r)


def wait_checks(slices: SliceSet, args, doc: Document) -> None:
    quota = min(args.quotas)
    s = slices.slice("rank0", int(quota * args.period_ms * 1000))
    waits = 4
    for variant, how, env in (("MPI_Barrier (busy-polling)", "barrier", {}),
                              ("MPI_Barrier, MPIR_CVAR_POLLS_BEFORE_YIELD=1", "barrier",
                               {"MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}),
                              ("nxpar's sleep-polled agreement", "sleepy", {})):
        for q, dirs in ((None, []), (quota, [str(d) for d in s.dirs if d is not None])):
            r = run_probe(2, ["mpi-wait", str(args.seconds / waits), str(waits), how, *dirs], env)
            doc.add("mpi-wait", variant=variant, quota=q, **r)


def unscaled_checks(slices: SliceSet, args, doc: Document) -> None:
    quota = min(args.quotas)
    s = slices.slice("unscaled", int(quota * args.period_ms * 1000))
    path = str(ROOT / "run" / f"unscaled-{os.getpid()}.bin") if (ROOT / "run").exists() else f"/tmp/unscaled-{os.getpid()}"
    for what, mb in (("disk (fdatasync)", 256), ("page cache", 256), ("memory copy", 64)):
        for q, slice_ in ((None, None), (quota, s)):
            doc.add("unscaled", what=what, quota=q, **in_slice(_unscaled, what, path, mb, slice_=slice_))
    Path(path).unlink(missing_ok=True)


def neighbour_checks(slices: SliceSet, args, doc: Document, quota: float = 0.2) -> None:
    for k in (1, 2, 4, 7):
        children = [Child(_compress_bound, args.seconds * 2, name="compress") for _ in range(k)]
        try:
            for i, child in enumerate(children):
                slices.slice(f"nb{k}-{i}", int(quota * args.period_ms * 1000)).add(child.pid)
            results = [child.result(600) for child in children]
        finally:
            for child in children:
                child.stop()
        doc.add("neighbours", processes=k, quota=quota,
                mb_per_cpu_s=sum(r["mb_per_cpu_s"] for r in results) / k,
                cores_used=sum(r["cpu_s"] / r["wall_s"] for r in results))


def run(args, doc: Document, _slices: SliceSet | None) -> None:
    from ..core.box import SliceSpec

    with SliceSet(SliceSpec(period_us=args.period_ms * 1000)) as slices:
        quota_checks(slices, args, doc)
        wait_checks(slices, args, doc)
        unscaled_checks(slices, args, doc)
        neighbour_checks(slices, args, doc)
