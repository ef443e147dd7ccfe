"""timeline: where the cores go, over time, during live scans: cores used by each process and idle
cores, sampled every 20 ms, with the publisher alone and with nxpar writing (the old
`perf.timeline_live`).

    python -m perf timeline --ranks 2 --frames 500 --repeat 3 [--perf /tmp/writer]

Phases, from the publisher's marks: prepare+start, first frame (until it is in Redis), frames,
stop+close, tail (the publisher's scan end → file closed). --perf PREFIX records the last writer
rank with Linux `perf` (DWARF call graphs) during each written scan: PREFIX<n>.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

from ..core.meter import IdleCores, Sampler
from ..core.publisher import PublisherProcess, scan_spec
from ..core.results import Document
from ..core.scan import wait_closed, wait_registered
from ..core.slices import SliceSet
from ..core.stack import bench_stack

SLICES = True
PHASES = (("prepare+start", "begin", "started"), ("first frame", "started", "first"), ("frames", "first", "sent"),
          ("stop+close", "sent", "closed"), ("tail", "closed", "file closed"))


def add_arguments(p) -> None:
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--compression", default="lz4-bitshuffle")
    p.add_argument("--perf", default=None, metavar="PREFIX", help="`perf record` the last writer rank: PREFIX<n>")


def perf_record(prefix: str | None, n: int, pid: int) -> subprocess.Popen | None:
    """Linux `perf` on one process (read with `perf report -i PREFIX<n> --no-children`)."""
    if not prefix:
        return None
    rec = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(pid),
                            "-o", f"{prefix}{n}"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached
    return rec


def one_scan(stack, service, publisher: PublisherProcess, session: str, i: int, args, doc: Document) -> None:
    spec = scan_spec(session, str(stack.rundir / f"{session}{i}.h5"), i + 1, args.frames, args.shape, args.dtype,
                     args.compression)
    publisher.create(**spec)
    writing = session == service.instance
    if writing:
        wait_registered(service.proxy, f"{i + 1}_ascan")
    procs = {"publisher": publisher.watched, "redis": stack.redis, **service.watched,
             "idle": IdleCores(), "iowait": IdleCores(4)}
    sampler = Sampler(procs)
    rec = perf_record(args.perf, i, service.pids[max(service.pids)]) if writing else None
    sampler.start()
    publisher.start_publish(first_join=True)
    t_closed = wait_closed(service.proxy, f"{i + 1}_ascan", publisher) if writing else None
    marks = publisher.wait()
    samples = sampler.stop()
    if rec is not None:
        rec.send_signal(signal.SIGINT)
        rec.wait()
    marks = dict(marks) | ({"file closed": t_closed} if t_closed else {})
    doc.add("timeline", scan=i + 1, session="nxpar" if writing else "publisher alone", marks=marks,
            samples=[(t, cores) for t, cores in samples])
    if writing:
        os.unlink(spec["filename"])
    stack.free_stream_data()


def run(args, doc: Document, slices: SliceSet | None) -> None:
    with bench_stack("timeline", slices, keep=args.keep) as stack:
        service = stack.start_service("tl", args.ranks, log_level=os.environ.get("NXPAR_TL_LOG", "WARNING"))
        publisher = PublisherProcess(stack.url, {(tuple(args.shape), args.dtype):
                                                 stack.frame_pool(tuple(args.shape), args.dtype)}, slices)
        try:
            for i in range(args.repeat):
                for session in ("nobody_writes", service.instance):
                    one_scan(stack, service, publisher, session, i, args, doc)
        finally:
            publisher.close()
            stack.stop_service(service)
