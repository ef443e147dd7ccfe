"""ab: A/B of writer-side settings, interleaved and paired with the same publisher alone (the old
`perf.ab_live`).

    python -m perf ab --ranks 2 --frames 500 --repeat 5 --variant NXPAR_SERIAL_DRIVER=0
    python -m perf ab --variant nice=-5 --variant nice=5 --variant @step_mb_per_writer=48 --variant @flush_period=2

One service for the default and one per --variant, side by side on one stack. A variant is
KEY=VALUE[,KEY=VALUE…]: an environment variable of the MPI job, `@property=value` a device property
(docs/interface.md), `nice=N` the writer ranks' nice value (every thread). Each round runs, back to
back: the publisher alone (a session no writer serves), then one scan through every service, so that
every figure has a same-conditions partner on a noisy machine. CPU, peak RSS (and throttling in
--slices) of every process per scan.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..core.meter import Meter
from ..core.publisher import Mode, PublisherProcess, pace_mb_s, publish_alone, scan_spec
from ..core.results import Document
from ..core.scan import replay
from ..core.slices import SliceSet
from ..core.stack import Service

SLICES = True


def add_arguments(p) -> None:
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--compression", default="lz4-bitshuffle")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--preload", action="store_true",
                   help="drain instead of live: every frame in Redis before PREPARED")
    p.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,…]",
                   help="environment (KEY=VALUE), device property (@name=value) or nice=N of one service")


@dataclass
class Variant:
    label: str
    env: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    nice: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Variant":
        v = cls(text)
        for item in text.split(","):
            key, _, value = item.partition("=")
            if key == "nice":
                v.nice = int(value)
            elif key.startswith("@"):
                v.properties[key[1:]] = value
            else:
                v.env[key] = value
        return v


def renice(service: Service, nice: int) -> None:
    """Every thread of every writer rank (threads started later inherit it from their creator)."""
    for rank, pid in service.pids.items():
        if rank == 0:
            continue
        for task in os.listdir(f"/proc/{pid}/task"):
            os.setpriority(os.PRIO_PROCESS, int(task), nice)


def start(stack, variants: list[Variant], args) -> dict[str, Service]:
    services = {}
    for n, v in enumerate(variants):
        services[v.label] = stack.start_service(f"ab{n}", args.ranks, env=v.env, properties=v.properties)
        if v.nice is not None:
            renice(services[v.label], v.nice)
    return services


def one_round(stack, publisher: PublisherProcess, services: dict[str, Service], args, doc: Document,
              i: int) -> None:
    spec = scan_spec("x", "", i + 1, args.frames, args.shape, args.dtype, args.compression)
    doc.add("alone", round=i + 1, mb_per_s=pace_mb_s(spec, publish_alone(publisher, spec)))
    stack.free_stream_data()
    mode = Mode.DRAIN if args.preload else Mode.LIVE
    for label, service in services.items():
        spec = scan_spec(service.instance, str(stack.rundir / f"{service.instance}_{i}.h5"), i + 1, args.frames,
                         args.shape, args.dtype, args.compression)
        meter = Meter({"publisher": publisher.watched, "redis": stack.redis, **service.watched})
        run = replay(service, publisher, spec, mode, meter)
        doc.add("scan", variant=label, round=i + 1, **vars(run))
        if run.state != "OFF":
            raise RuntimeError(f"{label}: scan ended {run.state}: {run.reason}")
        os.unlink(spec["filename"])
        stack.free_stream_data()
    print(f"round {i + 1}: " + ", ".join(f"{r['variant']} {r['mb_per_s']:.0f} MB/s"
                                         for r in doc.of("scan", round=i + 1)), flush=True)


def run(args, doc: Document, slices: SliceSet | None) -> None:
    from ..core.stack import bench_stack

    variants = [Variant("default")] + [Variant.parse(v) for v in args.variant]
    with bench_stack("ab", slices, keep=args.keep) as stack:
        publisher = PublisherProcess(stack.url, {(tuple(args.shape), args.dtype):
                                                 stack.frame_pool(tuple(args.shape), args.dtype)}, slices)
        services = start(stack, variants, args)
        try:
            for i in range(args.repeat):
                one_round(stack, publisher, services, args, doc, i)
        finally:
            publisher.close()
            for service in services.values():
                stack.stop_service(service)
