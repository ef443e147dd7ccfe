"""What every benchmark here sets up: one Redis + Tango DB for the whole run, writer services per
rank count, a frame stream to publish baselines into, and freeing stream data between runs."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def bench_stack(prefix: str, keep: bool = False) -> Iterator[tuple[object, str, Path]]:
    """(stack, redis URL, run directory): one Redis and one Tango DB for the whole benchmark (a client
    process keeps the first TANGO_HOST it saw); stopped by PID and the directory removed at the end."""
    from launch.stack import Stack

    base = Path(tempfile.mkdtemp(prefix=prefix, dir=ROOT / "run" if (ROOT / "run").exists() else None))
    stack = Stack(base / "stack")
    try:
        url = stack.start_redis()
        stack.start_tango_db()
        os.environ.update(stack.env)
        yield stack, url, base
    finally:
        stack.down()
        if keep:
            print(f"run directory kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def start_services(stack, prefix: str, ranks: list[int], log_level: str = "WARNING",
                   extra_env: dict | None = None) -> dict[int, object]:
    """One `mpirun -n R NexusWriterService` per rank count R (session = instance = prefix + R)."""
    proxies = {}
    for r in ranks:
        dev = stack.register(f"{prefix}{r}", f"{prefix}{r}")
        stack.start_service(f"{prefix}{r}", r, log_level, extra_env=extra_env)
        proxies[r] = stack.wait_device(dev)
    return proxies


def free_stream_data(url: str) -> None:
    """Drop every stream's data from Redis between runs (scans stay, their data goes)."""
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter("esrf:stream:*"):
        client.delete(key)


def frame_scan(url: str, name: str, session: str, frames: np.ndarray, scalars: tuple[str, ...] = ()):
    """A PREPARED blissdata scan with a `cam:image` stream shaped like `frames` (+ float scalars):
    (scan, frame stream, scalar streams). The caller starts, publishes, stops and closes it."""
    from blissdata.redis_engine.store import DataStore
    from blissdata.streams.default import Stream

    scan = DataStore(url).create_scan({"name": name, "number": 1, "data_policy": "None", "session": session},
                                      info={"name": name})
    stream = scan.create_stream(Stream.make_definition("cam:image", str(frames.dtype), frames.shape[1:]))
    streams = [scan.create_stream(Stream.make_definition(s, "float64", ())) for s in scalars]
    scan.prepare()
    return scan, stream, streams
