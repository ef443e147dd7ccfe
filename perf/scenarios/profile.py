"""profile: where the time goes in a live scan: py-spy on every rank and on the publisher while one
scan is published and written (the old `perf.profile_live`).

    python -m perf profile --ranks 2 --frames 600 [--idle]

py-spy records raw collapsed stacks at 100 Hz (non-blocking) into the run directory (--keep keeps
them); the table gives each process's CPU (kernel accounting), the share of the wall time py-spy saw
it busy, and its top functions by own time.
"""
from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..core.meter import Meter
from ..core.publisher import Mode, PublisherProcess, publish_alone, scan_spec
from ..core.results import Document
from ..core.scan import replay
from ..core.slices import SliceSet
from ..core.stack import bench_stack

SLICES = True
RATE_HZ = 100


def add_arguments(p) -> None:
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--compression", default="lz4-bitshuffle")
    p.add_argument("--idle", action="store_true", help="sample waiting threads too (where do the ranks wait?)")
    p.add_argument("--top", type=int, default=12)


def summarise(raw: Path, seconds: float, top: int) -> tuple[float, list[tuple[str, float]]]:
    """(share of the wall time sampled busy, [(function, share of the wall time)]) from collapsed stacks.
    py-spy samples only running threads unless --idle, so samples / (seconds × rate) is that share."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        leaf = stack.split(";")[-1]
        own[leaf.split(" (")[0] + " (" + leaf.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"] += int(count)
    norm = seconds * RATE_HZ
    return total / norm, [(f, n / norm) for f, n in own.most_common(top)]


def attach(targets: dict[str, int], outdir: Path, idle: bool) -> dict[str, tuple[subprocess.Popen, Path]]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    recorders = {}
    for name, pid in targets.items():
        raw = outdir / f"{name}.txt"
        cmd = [py_spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking", "--format", "raw",
               "--output", str(raw)] + (["--idle"] if idle else [])
        recorders[name] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw)
    time.sleep(1.0)  # attached
    return recorders


def run(args, doc: Document, slices: SliceSet | None) -> None:
    with bench_stack("profile", slices, keep=args.keep) as stack:
        service = stack.start_service("prof", args.ranks)
        publisher = PublisherProcess(stack.url, {(tuple(args.shape), args.dtype):
                                                 stack.frame_pool(tuple(args.shape), args.dtype)}, slices)
        recorders = {}
        try:
            warm = scan_spec("x", "", 1, 8, args.shape, args.dtype, args.compression)
            publish_alone(publisher, warm)  # the publisher has imported everything before py-spy attaches
            stack.free_stream_data()
            targets = {name: w.pid for name, w in service.watched.items()} | {"publisher": publisher.child.pid}
            recorders = attach(targets, stack.rundir, args.idle)
            spec = scan_spec(service.instance, str(stack.rundir / "scan.h5"), 1, args.frames, args.shape, args.dtype,
                             args.compression)
            meter = Meter({"publisher": publisher.watched, "redis": stack.redis, **service.watched})
            run_ = replay(service, publisher, spec, Mode.LIVE, meter)
            for proc, _ in recorders.values():
                proc.send_signal(signal.SIGINT)
            for proc, _ in recorders.values():
                proc.wait(timeout=30)
            profiles = {name: summarise(raw, run_.seconds, args.top) if raw.exists() else None
                        for name, (_, raw) in recorders.items()}
            doc.add("scan", **vars(run_), profiles=profiles)
        finally:
            for proc, _ in recorders.values():
                if proc.poll() is None:
                    proc.kill()
            publisher.close()
            stack.stop_service(service)
