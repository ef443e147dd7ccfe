"""redis_threads: how far Redis's `io-threads` moves the Redis read ceiling (issue 23: Redis is one thread).

    python -m perf redis_threads                                          # io-threads 1 2 4, 4 readers, unlimited
    python -m perf redis_threads --slices redis=0.2,baseline=0.2          # and in slices (below)
    python -m perf redis_threads --quick --slices redis=0.2,baseline=0.2  # about a minute

For each N of --threads, a fresh Redis started with `--io-threads N` (and `--io-threads-do-reads yes`
where this redis-server has it: Redis 6 and 7) holds one scan of --frames frames (blissdata's stream,
published once, unlimited); then --readers processes drain the whole scan at once, --rows frames per
XRANGE (the Redis ceiling of perf/core/baselines.py, its readers started together): their bytes together
over the wall time from the first one's start to the last one's end, --repeat times. Every N runs
unlimited (this machine's cores, shared by Redis and the readers) and, with --slices, in CPU slices:
Redis gets N × the spec's `redis` quota (one slice per thread; the cgroup limits the whole process: main
thread, I/O threads and background threads together), each reader the spec's `baseline` quota in a
slice of its own. io-threads 1 also runs at every other N's quota: a slice does not stop one thread from
using more than one emulated core, so that row is what the bigger quota alone gives. Measured on Redis:
CPU (its slice's cpuacct, else its threads' schedstat), its slice's throttling and the readers', and the
write and read calls its I/O threads made (INFO stats). Tables: perf/report/redis_tables.py.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.baselines import _fill_stream, _read_stream, in_child
from ..core.box import SliceSpec
from ..core.child import Channel, Child
from ..core.meter import threads_cpu_s
from ..core.publisher import MB
from ..core.results import ROOT, Document
from ..core.slices import CpuSlice, SliceSet, Throttling
from ..core.stack import BenchStack, bench_stack

SLICES = True
IO_STATS = ("io_threaded_writes_processed", "total_writes_processed", "io_threaded_reads_processed",
            "total_reads_processed")


def add_arguments(p) -> None:
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4], help="Redis io-threads values")
    p.add_argument("--readers", type=int, default=4, help="processes draining the scan at once")
    p.add_argument("--frames", type=int, default=256, help="frames of the scan (each reader reads them all)")
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--rows", type=int, default=8, help="frames per XRANGE")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="128 frames, two drains per configuration (about a minute)")


@dataclass(frozen=True)
class Limit:
    """The CPU the Redis process and each reader may use (real cores; None: not limited)."""

    limit: str  # "unlimited" or "slices"
    redis_cores: float | None
    reader_cores: float | None


def limits(spec: SliceSpec | None, threads: int, counts: list[int]) -> list[Limit]:
    """Unlimited, and with slices: Redis one `redis` quota per I/O thread, each reader the `baseline`
    one. io-threads 1 also runs at every other count's quota: what the bigger quota alone gives (a
    slice does not stop one thread from using more than one emulated core)."""
    out = [Limit("unlimited", None, None)]
    if spec is None or spec.redis is None:
        return out
    reader = spec.baseline if spec.baseline is not None else spec.redis
    return out + [Limit("slices", k * spec.redis, reader) for k in (sorted(set(counts)) if threads == 1 else [threads])]


def quota_us(cores: float | None, period_us: int) -> int | None:
    from ..core.box import MIN_QUOTA_US

    return None if cores is None else max(int(round(cores * period_us)), MIN_QUOTA_US)


def redis_version() -> str:
    """redis-server --version of the stack's Redis ('7.4.1')."""
    from launch.stack import SSL_DIR, redis_stack_dir

    out = subprocess.run([str(redis_stack_dir() / "bin" / "redis-server"), "--version"], capture_output=True,
                         text=True, env={"LD_LIBRARY_PATH": str(SSL_DIR)}, check=True).stdout
    found = re.search(r"v=(\d+(?:\.\d+)*)", out)
    return found.group(1) if found else "unknown"


def reads_option(version: str) -> bool:
    """Whether this Redis has `io-threads-do-reads` (Redis 6 and 7; Redis 8 reads in its I/O threads
    anyway and deprecated the option)."""
    major = version.split(".")[0]
    return major.isdigit() and int(major) in (6, 7)


def redis_args(threads: int, version: str) -> list[str]:
    return ["--io-threads", str(threads)] + (["--io-threads-do-reads", "yes"] if reads_option(version) else [])


def _describe(limit: Limit) -> str:
    return limit.limit if limit.redis_cores is None else f"Redis {limit.redis_cores:g} core"


# -- what runs in each reader -----------------------------------------------------------------------
def _drain(channel: Channel, url: str, key: str, n: int, rows: int) -> tuple[float, float]:
    """Ready once imported (and placed in its slice), then drain on the parent's word."""
    import redis  # noqa: F401 - imported before the start, not timed

    channel.send("ready")
    channel.receive()
    return _read_stream(channel, url, key, n, rows)


# -- the harness's side -----------------------------------------------------------------------------
@dataclass
class Snapshot:
    """Redis's side at one instant: CPU seconds, its slice's cpu.stat, the readers' slices', INFO stats."""

    t: float
    cpu_s: float
    redis: Throttling | None
    readers: list[Throttling]
    io: dict[str, int]

    @classmethod
    def take(cls, stack: BenchStack, reader_slices: list[CpuSlice]) -> "Snapshot":
        import redis

        info = redis.Redis.from_url(stack.url).info("stats")
        s = stack.redis.slice
        usage = s.usage_s() if s is not None else None
        return cls(time.perf_counter(), usage if usage is not None else threads_cpu_s(stack.redis_pid),
                   s.throttling() if s is not None else None, [r.throttling() for r in reader_slices],
                   {k: int(info.get(k, 0)) for k in IO_STATS})

    def since(self, before: "Snapshot") -> dict[str, object]:
        return {"cpu_wall_s": self.t - before.t, "redis_cpu_s": self.cpu_s - before.cpu_s,
                "redis_throttling": asdict(self.redis.minus(before.redis)) if self.redis else None,
                "readers_throttling": [asdict(a.minus(b)) for a, b in zip(self.readers, before.readers)],
                **{k: self.io[k] - before.io[k] for k in IO_STATS}}


def place_readers(slices: SliceSet | None, readers: list[Child], limit: Limit) -> list[CpuSlice]:
    if slices is None:
        return []
    quota = quota_us(limit.reader_cores, slices.spec.period_us)
    placed = []
    for i, child in enumerate(readers):
        placed.append(slices.slice(f"reader{i}", quota))
        placed[-1].add(child.pid)
    return placed


def drain_once(stack: BenchStack, slices: SliceSet | None, key: str, limit: Limit, args) -> dict[str, object]:
    """The readers drain the scan together: MB/s over first start → last end, and Redis's share."""
    readers = [Child(_drain, stack.url, key, args.frames, args.rows, name=f"reader{i}") for i in range(args.readers)]
    try:
        reader_slices = place_readers(slices, readers, limit)
        for r in readers:
            r.message(timeout=120)
        before = Snapshot.take(stack, reader_slices)
        for r in readers:
            r.send("go")
        spans = [r.result(timeout=1200) for r in readers]
        after = Snapshot.take(stack, reader_slices)
    finally:
        for r in readers:
            r.stop()
    seconds = max(e for _, e in spans) - min(s for s, _ in spans)
    return {"seconds": seconds, **after.since(before)}


def record_redis(stack: BenchStack, threads: int, extra: list[str], doc: Document) -> None:
    """The Redis as it runs: its io-threads settings (CONFIG GET) and the threads in its process."""
    import redis

    config = redis.Redis.from_url(stack.url).config_get("io-threads*")
    doc.add("redis", io_threads=threads, args=extra, config=config,
            threads_started=len(list(Path(f"/proc/{stack.redis_pid}/task").iterdir())))


def drains(stack: BenchStack, slices: SliceSet | None, key: str, threads: int, nbytes: int, args,
           doc: Document) -> None:
    for limit in limits(slices.spec if slices else None, threads, args.threads):
        if stack.redis.slice is not None:
            stack.redis.slice.set_quota(quota_us(limit.redis_cores, slices.spec.period_us))
        for _ in range(args.repeat):
            run = drain_once(stack, slices, key, limit, args)
            mb_per_s = nbytes / MB / run["seconds"]
            doc.add("ceiling", io_threads=threads, readers=args.readers, nbytes=nbytes, mb_per_s=mb_per_s,
                    **asdict(limit), **run)
            print(f"  io-threads {threads}, {_describe(limit)}: {mb_per_s:.0f} MB/s", flush=True)


def one_redis(slices: SliceSet | None, threads: int, version: str, pool: Path, args, doc: Document) -> None:
    """A fresh Redis with `--io-threads threads`: the scan published once, then every limit's drains."""
    extra = redis_args(threads, version)
    with bench_stack("redis_threads", slices, keep=args.keep, redis_args=extra, tango_db=False) as stack:
        if stack.redis.slice is not None:
            stack.redis.slice.set_quota(None)  # publishing is not what is measured
        key, _ = in_child(None, _fill_stream, stack.url, str(pool), args.frames)
        record_redis(stack, threads, extra, doc)
        nbytes = args.readers * args.frames * np.load(pool, mmap_mode="r")[0].nbytes
        drains(stack, slices, key, threads, nbytes, args, doc)


def frame_pool(folder: Path, args, count: int = 16) -> Path:
    """`count` realistic frames, saved once for every Redis of the command (the readers never load them)."""
    from launch.simulate import realistic_frames

    path = folder / "frames.npy"
    np.save(path, realistic_frames(count, tuple(args.shape), args.dtype))
    return path


def run(args, doc: Document, slices: SliceSet | None) -> None:
    if args.quick:
        args.frames, args.repeat = 128, 2
    version = redis_version()
    doc.params.update(frames=args.frames, repeat=args.repeat, redis_version=version,
                      reads_option=reads_option(version))
    parent = ROOT / "run" if (ROOT / "run").exists() else None
    with tempfile.TemporaryDirectory(prefix="nxpar-redis_threads-", dir=parent) as folder:
        pool = frame_pool(Path(folder), args)
        for threads in args.threads:
            one_redis(slices, threads, version, pool, args, doc)
