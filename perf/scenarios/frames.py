"""frames: nxpar's frame throughput by rank count, live and drain, against single-process baselines
measured in the same run on the same frames (the old `perf.bench`).

    python -m perf frames --frames 500 --shape 1024 1024 --ranks 1 2 3 4 --repeat 3

For each scheme: the baselines (perf/core/baselines.py), then one service per rank count writing the
same scan `--repeat` times per mode; every live scan is paired with the very same publisher alone
just before it. CPU, peak RSS (and throttling, in --slices) of every process per scan.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..core.baselines import disk_mb_s, follower_run, redis_mb_s, writing_mb_s
from ..core.meter import Meter
from ..core.publisher import Mode, PublisherProcess, pace_mb_s, publish_alone, scan_spec
from ..core.results import Document
from ..core.scan import replay
from ..core.slices import SliceSet
from ..core.stack import BenchStack, bench_stack

SLICES = True


def add_arguments(p) -> None:
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--compression", nargs="+", default=["lz4-bitshuffle"])
    p.add_argument("--repeat", type=int, default=3, help="scans per configuration (median, min-max)")
    p.add_argument("--modes", nargs="+", default=["live", "drain"], choices=[m.value for m in Mode])
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment of the services (e.g. NXPAR_SERIAL_DRIVER=0)")


def baselines(stack: BenchStack, publisher: PublisherProcess, pool: Path, scheme: str, args, doc: Document,
              slices: SliceSet | None) -> None:
    values = writing_mb_s(slices, pool, args.frames, scheme, stack.rundir)
    values |= disk_mb_s(slices, pool, args.frames, stack.rundir)
    values |= redis_mb_s(slices, stack.url, pool, args.frames)
    stack.free_stream_data()
    for mode in map(Mode, args.modes):
        spec = scan_spec("x", str(stack.rundir / "single.h5"), 1, args.frames, args.shape, args.dtype, scheme)
        values[f"{mode.value} single-process writer"] = follower_run(slices, publisher, stack.url, spec, mode,
                                                                     True)["mb_per_s"]
        stack.free_stream_data()
    if Mode.LIVE.value in args.modes:
        spec = scan_spec("x", "", 1, args.frames, args.shape, args.dtype, scheme)
        values["live relay"] = follower_run(slices, publisher, stack.url, spec, Mode.LIVE, False)["mb_per_s"]
        stack.free_stream_data()
    for name, value in values.items():
        doc.add("baseline", scheme=scheme, name=name, mb_per_s=value)


def scans(stack: BenchStack, publisher: PublisherProcess, scheme: str, ranks: int, args, doc: Document,
          scan_nb: int) -> int:
    env = dict(kv.split("=", 1) for kv in args.env)
    service = stack.start_service(f"frames{ranks}_{scheme.replace('-', '_')}", ranks, env=env)
    meter = Meter({"publisher": publisher.watched, "redis": stack.redis, **service.watched})
    try:
        for mode in map(Mode, args.modes):
            for _ in range(args.repeat):
                scan_nb += 1
                spec = scan_spec(service.instance, str(stack.rundir / f"{service.instance}_{scan_nb}.h5"), scan_nb,
                                 args.frames, args.shape, args.dtype, scheme)
                alone = None
                if mode is Mode.LIVE:  # the same publisher alone, just before: paired, same conditions
                    alone = pace_mb_s(spec, publish_alone(publisher, spec))
                    stack.free_stream_data()
                run = replay(service, publisher, spec, mode, meter)
                doc.add("scan", **vars(run), publisher_alone_mb_per_s=alone)
                if run.state != "OFF":
                    raise RuntimeError(f"scan ended {run.state}: {run.reason}")
                os.unlink(spec["filename"])
                stack.free_stream_data()
    finally:
        stack.stop_service(service)
    return scan_nb


def run(args, doc: Document, slices: SliceSet | None) -> None:
    with bench_stack("frames", slices, keep=args.keep) as stack:
        pool = stack.frame_pool(tuple(args.shape), args.dtype)
        publisher = PublisherProcess(stack.url, {(tuple(args.shape), args.dtype): pool}, slices)
        try:
            scan_nb = 0
            for scheme in args.compression:
                baselines(stack, publisher, pool, scheme, args, doc, slices)
                for ranks in args.ranks:
                    scan_nb = scans(stack, publisher, scheme, ranks, args, doc, scan_nb)
        finally:
            publisher.close()
