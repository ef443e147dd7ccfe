"""scaling: emulated many-core boxes (every process in its own CPU slice), nxpar against N writer ranks,
drain and live, with the same-run single-process baselines and the slices' throttling statistics.

    python -m perf scaling                        # 4-, 8- and 16-core boxes, 3 schemes, drain + live (< 20 min)
    python -m perf scaling --quick                # an 8-core box, 1 and 4 writers (a few minutes)
    python -m perf scaling --real                 # real cores, no slices (a lent many-core machine)

A box of N cores of `core` real core each (perf/core/box.py): rank 0 and each writer rank one core,
Redis one, the publisher --publisher-cores, the single-process baseline one. `core` is chosen so that
every slice together fits in --budget real cores (or given with --core). Writer counts: 1, 2, 4, …
below N, and N-1. Each box's baselines (publisher alone, the Redis ceiling, h5py-serial, the
single-process writer drain and live) run in the box's slices before the services; one service per
writer count serves every box, scheme and mode that uses it (slices re-quota'd per box). Scans are
sized to last about --seconds at the pace nxpar would reach if it scaled (at least a chunk row of 8
frames per writer rank, at most --max-mb), so that the run stays bounded whatever nxpar does.
"""
from __future__ import annotations

import contextlib
import math
import os

from ..core.baselines import follower_run, redis_mb_s, writing_mb_s
from ..core.box import EmulatedBox, SliceSpec
from ..core.meter import Meter
from ..core.publisher import MB, Mode, PublisherProcess, pace_mb_s, publish_alone, scan_spec
from ..core.results import Document
from ..core.scan import replay
from ..core.slices import SliceSet
from ..core.stack import BenchStack, bench_stack

SCHEMES = ["lz4-bitshuffle", "gzip-byteshuffle", "blosc-zstd"]
# expected MB/s per real core, only to size the scans (what binds: one writer rank's read + filter +
# write, the Redis server's one thread, the Python publisher)
WRITER_RATE = {"lz4-bitshuffle": 600.0, "gzip-byteshuffle": 70.0, "blosc-zstd": 300.0}
REDIS_RATE, PUBLISHER_RATE = 2500.0, 600.0


def add_arguments(p) -> None:
    p.add_argument("--boxes", type=int, nargs="+", default=[4, 8, 16], help="emulated core counts")
    p.add_argument("--budget", type=float, default=1.8, help="real cores all slices of a box may use together")
    p.add_argument("--core", type=float, default=None, help="real core per emulated core (default: from --budget)")
    p.add_argument("--publisher-cores", type=float, default=2.0, help="emulated cores of the publisher")
    p.add_argument("--writers", type=int, nargs="+", default=None, help="writer counts (default 1, 2, 4, …, N-1)")
    p.add_argument("--compression", nargs="+", default=SCHEMES)
    p.add_argument("--modes", nargs="+", default=["drain", "live"], choices=[m.value for m in Mode])
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--seconds", type=float, default=2.0, help="about how long a scan lasts if nxpar scales")
    p.add_argument("--max-mb", type=float, default=256.0, help="largest scan, MB")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="an 8-core box, 1 and 4 writers, 1.5 s scans, ≤ 128 MB")
    p.add_argument("--real", action="store_true",
                   help="real cores, no slices: one box of this machine's cores (for a lent many-core machine)")


def boxes(args) -> list[EmulatedBox]:
    if args.quick:
        args.boxes, args.writers, args.seconds, args.max_mb = [8], [1, 4], 1.5, 128.0
    if args.real:
        return [EmulatedBox(max((os.cpu_count() or 4) - 2, 2), 1.0, args.publisher_cores)]
    if args.core:
        return [EmulatedBox(n, args.core, args.publisher_cores) for n in args.boxes]
    return [EmulatedBox.fitting(n, args.budget, args.publisher_cores) for n in args.boxes]


def writer_counts(box: EmulatedBox, args) -> list[int]:
    return [w for w in (args.writers or box.writer_counts()) if w <= box.writers]


def scan_frames(box: EmulatedBox, writers: int, scheme: str, mode: Mode, args) -> int:
    """Frames for a scan of about args.seconds at the pace nxpar should reach (whole chunk rows of 8, at
    least one per writer rank, at most --max-mb): bounded whatever nxpar does, long enough for steps."""
    rate = min(writers * WRITER_RATE.get(scheme, 300.0), REDIS_RATE)
    if mode is Mode.LIVE:
        rate = min(rate, PUBLISHER_RATE * box.publisher_cores)
    frame_mb = math.prod(args.shape) * (2 if args.dtype.endswith("16") else 4) / MB
    frames = min(rate * box.core * args.seconds / frame_mb, args.max_mb / frame_mb)
    return max(int(round(frames / 8)) * 8, 8 * writers)


def box_baselines(stack: BenchStack, publisher: PublisherProcess, box: EmulatedBox, args, doc: Document,
                  slices: SliceSet | None) -> None:
    pool = stack.frame_pool(tuple(args.shape), args.dtype)
    live_frames = scan_frames(box, 1, "lz4-bitshuffle", Mode.LIVE, args)
    spec = scan_spec("x", "", 1, live_frames, args.shape, args.dtype, None)
    doc.add("baseline", box=box.name, scheme=None, mode="live", name="publisher alone",
            mb_per_s=pace_mb_s(spec, publish_alone(publisher, spec)))
    stack.free_stream_data()
    ceiling = redis_mb_s(slices, stack.url, pool, scan_frames(box, box.writers, "lz4-bitshuffle", Mode.DRAIN, args),
                         readers=3, fill_unsliced=True)
    doc.add("baseline", box=box.name, scheme=None, mode="drain", name="redis ceiling", mb_per_s=ceiling["redis ceiling"])
    stack.free_stream_data()
    for scheme in args.compression:
        serial = writing_mb_s(slices, pool, scan_frames(box, 1, scheme, Mode.DRAIN, args), scheme, stack.rundir)
        doc.add("baseline", box=box.name, scheme=scheme, mode="drain", name="h5py-serial",
                mb_per_s=serial["h5py-serial"])
        for mode in map(Mode, args.modes):
            spec = scan_spec("x", str(stack.rundir / "single.h5"), 1, scan_frames(box, 1, scheme, mode, args),
                             args.shape, args.dtype, scheme)
            doc.add("baseline", box=box.name, scheme=scheme, mode=mode.value, name="single-process writer",
                    **follower_run(slices, publisher, stack.url, spec, mode, True))
            stack.free_stream_data()


def box_scans(stack: BenchStack, publisher: PublisherProcess, service, box: EmulatedBox, args, doc: Document,
              scan_nb: int) -> int:
    meter = Meter({"publisher": publisher.watched, "redis": stack.redis, **service.watched})
    for scheme in args.compression:
        for mode in map(Mode, args.modes):
            for _ in range(args.repeat):
                scan_nb += 1
                frames = scan_frames(box, service.writers, scheme, mode, args)
                spec = scan_spec(service.instance, str(stack.rundir / f"s{scan_nb}.h5"), scan_nb, frames,
                                 args.shape, args.dtype, scheme)
                run = replay(service, publisher, spec, mode, meter)
                doc.add("scan", box=box.name, cores=box.cores, core=box.core, **vars(run))
                print(f"  {box.name} {scheme} {mode.value} {service.writers} writers: {run.state} "
                      f"{run.mb_per_s:.1f} MB/s, closed {run.close_after_end_s:.2f} s after the end", flush=True)
                if run.state != "OFF":
                    raise RuntimeError(f"scan ended {run.state}: {run.reason}")
                os.unlink(spec["filename"])
                stack.free_stream_data()
    return scan_nb


def warm_up(stack: BenchStack, publisher: PublisherProcess, service, frames: int, scan_nb: int) -> None:
    """One unmeasured scan: a fresh Redis's first allocations, the service's first file."""
    spec = scan_spec(service.instance, str(stack.rundir / "warm.h5"), scan_nb, frames, (256, 256), "uint16", None)
    replay(service, publisher, spec, Mode.DRAIN)
    os.unlink(spec["filename"])
    stack.free_stream_data()


def run_boxes(stack: BenchStack, publisher: PublisherProcess, all_boxes: list[EmulatedBox], args, doc: Document,
              slices: SliceSet | None) -> None:
    if slices:  # a fresh Redis's first allocations, unlimited: slow inside a slice, and not what is measured
        slices.requota(SliceSpec(period_us=slices.spec.period_us))
    frames = scan_frames(all_boxes[-1], all_boxes[-1].writers, "lz4-bitshuffle", Mode.DRAIN, args)
    publish_alone(publisher, scan_spec("x", "", 1, frames, args.shape, args.dtype, None))
    stack.free_stream_data()
    for box in all_boxes:
        doc.add("box", name=box.name, cores=box.cores, core=box.core, writers=writer_counts(box, args),
                slices=vars(box.slices()) if slices else None)
        if slices:
            slices.requota(box.slices())
        box_baselines(stack, publisher, box, args, doc, slices)
    scan_nb = 0
    for writers in sorted({w for box in all_boxes for w in writer_counts(box, args)}):
        service = stack.start_service(f"scal{writers}", writers + 1)
        try:
            scan_nb += 1
            warm_up(stack, publisher, service, 16 * writers, scan_nb)
            for box in (b for b in all_boxes if writers in writer_counts(b, args)):
                if slices:
                    slices.requota(box.slices())
                scan_nb = box_scans(stack, publisher, service, box, args, doc, scan_nb)
        finally:
            stack.stop_service(service)


def run(args, doc: Document, _slices: SliceSet | None) -> None:
    all_boxes = boxes(args)
    doc.params.update(boxes=[b.name for b in all_boxes], writers=args.writers, seconds=args.seconds,
                      max_mb=args.max_mb)
    with (contextlib.nullcontext() if args.real else SliceSet(all_boxes[0].slices())) as slices, \
            bench_stack("scaling", slices, keep=args.keep) as stack:
        pools = {(tuple(shape), dtype): stack.frame_pool(tuple(shape), dtype)
                 for shape, dtype in ((args.shape, args.dtype), ((256, 256), "uint16"))}
        publisher = PublisherProcess(stack.url, pools, slices)
        try:
            run_boxes(stack, publisher, all_boxes, args, doc, slices)
        finally:
            publisher.close()

