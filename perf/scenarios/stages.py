"""stages: CPU seconds per GiB of each stage of nxpar's write path, each measured alone, and the
projection they give for more cores (perf/model.py).

    python -m perf stages --frames 300 --compression lz4-bitshuffle gzip-byteshuffle blosc-zstd

Stages: the Redis server publishing and serving frames (its CPU, one thread), a writer rank reading
them (XRANGE of one step's frames per request) and decoding them into rows, the filter (h5py into an
in-memory file), the HDF5 write (mpio, collective, to disk, minus the filter), nxpar's agreements per
step (perf/probes.py under mpirun), and rank 0's CPU per step in a real service scan.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from ..core.meter import Meter, threads_cpu_s
from ..core.publisher import Mode, PublisherProcess, scan_spec
from ..core.results import Document
from ..core.scan import replay
from ..core.slices import SliceSet
from ..core.stack import BenchStack, bench_stack
from ..model import GIB, StageCosts, frames_per_step
from ..probes import run as run_probe

SLICES = False


def add_arguments(p) -> None:
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--compression", nargs="+", default=["lz4-bitshuffle", "gzip-byteshuffle", "blosc-zstd"])
    p.add_argument("--writers", type=int, default=2, help="ranks of the agreement probe and writers of the service scan")


def redis_costs(stack: BenchStack, frames: np.ndarray, n: int) -> dict[str, float]:
    """Publish n frames, read them back one step per request: client and server CPU per GiB, decode."""
    import redis as redis_lib
    from blissdata.redis_engine.store import DataStore
    from blissdata.streams.default import Stream
    from blissdata.streams.event_stream import StreamEntry

    scan = DataStore(stack.url).create_scan({"name": "stages", "number": 1, "data_policy": "None",
                                             "session": "stages"}, info={"name": "stages"})
    stream = scan.create_stream(Stream.make_definition("cam:image", str(frames.dtype), frames.shape[1:]))
    scan.prepare()
    scan.start()
    server0 = threads_cpu_s(stack.redis_pid)
    for i in range(n):
        stream.send(frames[i % len(frames)][None])
    scan.stop()  # returns once everything is in Redis
    publish_server = threads_cpu_s(stack.redis_pid) - server0
    scan.close()
    key = DataStore(stack.url).load_scan(scan.key).streams["cam:image"].event_stream.key
    rows, client = frames_per_step(frames[0].nbytes), redis_lib.Redis.from_url(stack.url)
    raw, client0, server0 = [], time.process_time(), threads_cpu_s(stack.redis_pid)
    for start in range(0, n, rows):
        raw.append(client.xrange(key, min=start, max=min(start + rows, n) - 1))
    read_client, read_server = time.process_time() - client0, threads_cpu_s(stack.redis_pid) - server0
    buf = np.empty((rows,) + frames.shape[1:], frames.dtype)
    t0 = time.process_time()
    for items in raw:
        for j, e in enumerate(StreamEntry.from_raw(item) for item in items):
            if not e.is_seal:
                buf[j:j + e.length] = np.frombuffer(e.batch.payload, dtype=frames.dtype).reshape(
                    (e.length,) + frames.shape[1:])
    decode = time.process_time() - t0
    client.delete(key)
    gib = n * frames[0].nbytes / GIB
    return {"redis_read_client": read_client / gib, "redis_read_server": read_server / gib,
            "redis_publish_server": publish_server / gib, "decode": decode / gib}


def rank0_per_step(stack: BenchStack, pool, scheme: str, args) -> float:
    """Rank 0's CPU per step in one drain scan of the real service."""
    service = stack.start_service(f"stages_{scheme.replace('-', '_')}", args.writers + 1)
    publisher = PublisherProcess(stack.url, {(tuple(args.shape), args.dtype): pool})
    try:
        spec = scan_spec(service.instance, str(stack.rundir / "stages.h5"), 1, args.frames, args.shape, args.dtype,
                         scheme)
        run = replay(service, publisher, spec, Mode.DRAIN, Meter(dict(service.watched)))
        steps = math.ceil(args.frames / (frames_per_step(run.nbytes // run.frames) * service.writers))
        os.unlink(spec["filename"])
        return run.use["rank0"].cpu_s / steps
    finally:
        publisher.close()
        stack.stop_service(service)


def run(args, doc: Document, _slices: SliceSet | None) -> None:
    with bench_stack("stages", None, keep=args.keep) as stack:
        pool = stack.frame_pool(tuple(args.shape), args.dtype)
        frames = np.load(pool)
        for scheme in args.compression:
            r = redis_costs(stack, frames, args.frames)
            w = run_probe(1, ["stage-write", str(stack.rundir / "stage.h5"), *map(str, args.shape), args.dtype,
                              scheme, str(args.frames)])
            agree = run_probe(max(args.writers, 2), ["stage-agree", "300"])["per_step"]
            costs = StageCosts(scheme, frames[0].nbytes, agreement_per_step=agree,
                               rank0_per_step=rank0_per_step(stack, pool, scheme, args), **r, **w)
            doc.add("stage-costs", costs=costs)
            stack.free_stream_data()
