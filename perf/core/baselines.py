"""Single-process baselines, measured in the same run as nxpar, same frames, same filter; each in a
child process of its own (in slices: the `baseline` slice, one writer rank's share):

  h5py-serial             one process writes the frames from memory with h5py (serial driver, the
                          filter, one frame per chunk): what one core does without Redis
  filter (1 core)         the same into an in-memory file: the filter's own rate on one core
  disk page cache / fdatasync   raw bytes to the run directory
  redis publish / read    one frame stream into Redis, read back 8 frames per request
  redis ceiling           K processes reading the same stream at once: what the Redis server (in its
                          slice) serves at most
  single-process writer   blisswriter's design (perf/single_process_writer.py) writing the very scan
                          nxpar writes, live (published while written) or drained from Redis
  live relay              the same follower without HDF5: the live ceiling of any Redis-fed writer
  publisher alone         nxpar's publisher with nobody writing (perf/core/publisher.py)
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .box import Role
from .child import Channel, Child
from .publisher import MB, Mode, PublisherProcess, frame_bytes
from .slices import SliceSet


# -- what runs in the child ------------------------------------------------------------------------
def _serial_h5py(channel: Channel, pool_path: str, n: int, scheme: str, path: str, in_memory: bool) -> float:
    import h5py

    from nxpar.writers.filters import filter_kwargs

    frames = np.load(pool_path)
    kwargs = {"driver": "core", "backing_store": False} if in_memory else {}
    t0 = time.perf_counter()
    with h5py.File(path, "w", **kwargs) as f:
        d = f.create_dataset("data", shape=(n,) + frames.shape[1:], dtype=frames.dtype,
                             chunks=(1,) + frames.shape[1:], **filter_kwargs(scheme))
        for i in range(n):
            d[i] = frames[i % len(frames)]
    return time.perf_counter() - t0


def _disk(channel: Channel, pool_path: str, n: int, path: str, sync: bool) -> float:
    import os

    frames = np.load(pool_path)
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        for i in range(n):
            fh.write(frames[i % len(frames)].tobytes())
        if sync:
            fh.flush()
            os.fdatasync(fh.fileno())
    return time.perf_counter() - t0


def _fill_stream(channel: Channel, url: str, pool_path: str, n: int) -> tuple[str, float]:
    """A finished scan with one frame stream of n frames: (stream key, seconds to publish)."""
    from blissdata.redis_engine.store import DataStore
    from blissdata.streams.default import Stream

    frames = np.load(pool_path)
    scan = DataStore(url).create_scan({"name": "baseline", "number": 1, "data_policy": "None",
                                       "session": "nobody_writes"}, info={"name": "baseline"})
    stream = scan.create_stream(Stream.make_definition("cam:image", str(frames.dtype), frames.shape[1:]))
    scan.prepare()
    scan.start()
    t0 = time.perf_counter()
    for i in range(n):
        stream.send(frames[i % len(frames)][None])
    scan.stop()  # blissdata sends in the background: stop() returns once everything is in Redis
    seconds = time.perf_counter() - t0
    scan.close()
    return DataStore(url).load_scan(scan.key).streams["cam:image"].event_stream.key, seconds


def _read_stream(channel: Channel, url: str, key: str, n: int, rows: int) -> tuple[float, float]:
    """XRANGE the stream `rows` entries per request: (start, end) on the shared clock."""
    import redis

    client = redis.Redis.from_url(url)
    t0 = time.perf_counter()
    for start in range(0, n, rows):
        client.xrange(key, min=start, max=min(start + rows, n) - 1)
    return t0, time.perf_counter()


def _relay(channel: Channel, url: str, scan_key: str) -> float:
    """Follow every stream of a scan to its end without writing; perf_counter at the end."""
    from blissdata.exceptions import EndOfStream
    from blissdata.redis_engine.scan import ScanState
    from blissdata.redis_engine.store import DataStore
    from blissdata.streams import CursorGroup

    scan = DataStore(url).load_scan(scan_key)
    channel.send("ready")
    while scan.state < ScanState.PREPARED:
        scan.update(timeout=1)
    cursor = CursorGroup(scan.streams)
    while True:
        try:
            cursor.read(timeout=0.1)
        except EndOfStream:
            return time.perf_counter()


def single_process_writer(channel: Channel, url: str, scan_key: str, filename: str) -> None:
    from perf.single_process_writer import follow_and_write

    follow_and_write(url, scan_key, filename, channel)


# -- the harness's side ----------------------------------------------------------------------------
def in_child(slices: SliceSet | None, target, *args: Any, timeout: float = 1200) -> Any:
    child = Child(target, *args, name=target.__name__.strip("_"))
    if slices is not None:
        slices.place(child.pid, Role.BASELINE)
    try:
        return child.result(timeout)
    finally:
        child.stop()


def writing_mb_s(slices: SliceSet | None, pool: Path, n: int, scheme: str, workdir: Path) -> dict[str, float]:
    """h5py-serial and filter (1 core), MB/s."""
    nbytes = n * np.load(pool, mmap_mode="r")[0].nbytes
    serial = in_child(slices, _serial_h5py, str(pool), n, scheme, str(workdir / "serial.h5"), False)
    memory = in_child(slices, _serial_h5py, str(pool), n, scheme, "memory.h5", True)
    (workdir / "serial.h5").unlink(missing_ok=True)
    return {"h5py-serial": nbytes / MB / serial, "filter (1 core)": nbytes / MB / memory}


def disk_mb_s(slices: SliceSet | None, pool: Path, n: int, workdir: Path) -> dict[str, float]:
    nbytes = n * np.load(pool, mmap_mode="r")[0].nbytes
    out = {name: nbytes / MB / in_child(slices, _disk, str(pool), n, str(workdir / "raw.bin"), sync)
           for name, sync in (("disk page cache", False), ("disk fdatasync", True))}
    (workdir / "raw.bin").unlink(missing_ok=True)
    return out


def redis_mb_s(slices: SliceSet | None, url: str, pool: Path, n: int, readers: int = 1, rows: int = 8,
               fill_unsliced: bool = False) -> dict[str, float]:
    """redis publish (one process), redis read (one reader) and, with readers > 1, the redis ceiling
    (that many readers at once, not sliced: the Redis server's slice binds). fill_unsliced: the stream
    is published outside the baseline slice (its pace is then not a baseline)."""
    nbytes = n * np.load(pool, mmap_mode="r")[0].nbytes
    key, publish_s = in_child(None if fill_unsliced else slices, _fill_stream, url, str(pool), n)
    t0, t1 = in_child(slices, _read_stream, url, key, n, rows)
    out = {"redis publish": nbytes / MB / publish_s, "redis read": nbytes / MB / (t1 - t0)}
    if readers > 1:
        children = [Child(_read_stream, url, key, n, rows, name="reader") for _ in range(readers)]
        spans = [c.result(600) for c in children]
        out["redis ceiling"] = readers * nbytes / MB / (max(e for _, e in spans) - min(s for s, _ in spans))
    return out


def follower_run(slices: SliceSet | None, publisher: PublisherProcess, url: str, spec: dict[str, Any],
                 mode: Mode, write: bool) -> dict[str, float]:
    """The single-process writer (write=True) or the relay following one scan of a session no writer
    serves: MB/s (live: publisher's first call → done; drain: PREPARED → done) and the lag after
    the publisher closed the scan."""
    key = publisher.create(**{**spec, "session": "nobody_writes"})
    child = (Child(single_process_writer, url, key, spec["filename"], name="single_process_writer") if write
             else Child(_relay, url, key, name="relay"))
    if slices is not None:
        slices.place(child.pid, Role.BASELINE)
    try:
        child.message(timeout=120)  # "ready": attached to the scan
        publisher.unlimited(mode is Mode.DRAIN)
        publisher.start_publish(preload=mode is Mode.DRAIN)
        marks = publisher.wait()
        publisher.unlimited(False)
        done = child.message(timeout=1200) if write else child.result(timeout=1200)
    finally:
        child.stop()
        if write:
            Path(spec["filename"]).unlink(missing_ok=True)
    t0 = marks["begin"] if mode is Mode.LIVE else marks["started"]
    return {"mb_per_s": frame_bytes(spec) / MB / (done - t0), "lag_s": done - marks["closed"]}
