"""replay: one realistic scan (or a few) through a writer service: MB/s, compression ratio, file
closed after the scan's end, peak RSS per rank (the old `perf.replay_scan`).

    python -m perf replay --ranks 3 --frames 200 --shape 1024 1024
    python -m perf replay --ranks 3 --frames 20000 --shape 256 256 --batch 10     # RSS against scan length
"""
from __future__ import annotations

import os

from ..core.meter import Meter
from ..core.publisher import Mode, PublisherProcess, scan_spec
from ..core.results import Document
from ..core.scan import replay
from ..core.slices import SliceSet
from ..core.stack import bench_stack

SLICES = True


def add_arguments(p) -> None:
    p.add_argument("--ranks", type=int, default=3)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--compression", default=None, help="none, gzip, gzip-byteshuffle, lz4-bitshuffle, blosc-zstd")
    p.add_argument("--rate", type=float, default=None, help="frames per second (default: flat out)")
    p.add_argument("--batch", type=int, default=1, help="frames per Redis event")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--unknown-length", action="store_true", help="npoints = 0 in scan_info")
    p.add_argument("--preload", action="store_true", help="drain: every frame in Redis before PREPARED")


def run(args, doc: Document, slices: SliceSet | None) -> None:
    with bench_stack("replay", slices, keep=args.keep) as stack:
        service = stack.start_service("replay", args.ranks)
        publisher = PublisherProcess(stack.url, {(tuple(args.shape), args.dtype):
                                                 stack.frame_pool(tuple(args.shape), args.dtype)}, slices)
        meter = Meter({"publisher": publisher.watched, "redis": stack.redis, **service.watched})
        try:
            for i in range(args.repeat):
                spec = scan_spec(service.instance, str(stack.rundir / f"scan{i}.h5"), i + 1, args.frames, args.shape,
                                 args.dtype, args.compression, publish_npoints=not args.unknown_length)
                r = replay(service, publisher, spec, Mode.DRAIN if args.preload else Mode.LIVE, meter,
                           batch=args.batch, rate_hz=args.rate)
                doc.add("scan", **vars(r))
                if not args.keep:
                    os.unlink(spec["filename"])
                stack.free_stream_data()
        finally:
            publisher.close()
            stack.stop_service(service)
