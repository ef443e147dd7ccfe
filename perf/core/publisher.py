"""BLISS's side of every frame benchmark: a publisher process (launch/simulate.py's ScanPublisher,
in a child process so that it has its own CPU slice), and `replay`: one scan through a writer
service, measured from the publisher's first call to the file closed.

Clocks: time.perf_counter is CLOCK_MONOTONIC, one clock for every process of the machine, so the
publisher's marks and the harness's are comparable. Marks of one scan:
  begin    the publisher starts (live: before PREPARED/STARTED; drain: before preloading)
  started  PREPARED + STARTED published (drain: after every point is already in Redis)
  sent     every point in Redis
  closed   the scan stopped and closed by the publisher (BLISS's scan end)
"""
from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Any

import numpy as np

from .box import Role
from .child import Channel, Child
from .meter import Watched
from .slices import SliceSet

MB = 2**20  # MB/s in these benchmarks are MiB/s, as in every earlier round


class Mode(str, enum.Enum):
    LIVE = "live"  # published while written
    DRAIN = "drain"  # every point in Redis before PREPARED: the writer alone, from PREPARED on


def _publish(pub, npoints: int, batch: int, rate_hz: float | None, preload: bool, first_join: bool) -> dict:
    marks = {"begin": time.perf_counter()}

    def join() -> None:
        for stream in pub.streams.values():
            stream.join()

    if not preload:
        pub.prepare_start()
        marks["started"] = time.perf_counter()
    t0 = time.perf_counter()
    while pub.sent < npoints:
        pub.send(min(batch, npoints - pub.sent), batch)
        if first_join and "first" not in marks:
            join()
            marks["first"] = time.perf_counter()
        if rate_hz:  # paced by the clock: the time spent sending does not slow the rate
            time.sleep(max(t0 + pub.sent / rate_hz - time.perf_counter(), 0.0))
    join()
    marks["sent"] = time.perf_counter()
    if preload:
        pub.prepare_start()
        marks["started"] = time.perf_counter()
    pub.stop_close()
    marks["closed"] = time.perf_counter()
    return marks


def serve_publisher(channel: Channel, url: str, pools: dict[str, str]) -> None:
    """The child: create / publish / expected on request, until 'stop'."""
    from launch.simulate import ScanPublisher, ScanSpec

    frames = {key: np.load(path) for key, path in pools.items()}
    pub = None
    while True:
        request, *args = channel.receive()
        if request == "stop":
            return
        if request == "create":
            spec = ScanSpec(**args[0])
            pool = frames.get(f"{spec.image_shape}{spec.image_dtype}") if spec.image_shape else None
            pub = ScanPublisher(url, spec, pool)
            channel.send(pub.scan.key)
        elif request == "publish":
            channel.send(_publish(pub, pub.spec.npoints, **args[0]))
        elif request == "expected":
            channel.send(pub.expected(*args))


class PublisherProcess:
    """The publisher child: one per command, reused scan after scan."""

    def __init__(self, url: str, pools: dict[tuple, Path], slices: SliceSet | None = None) -> None:
        keyed = {f"{tuple(shape)}{dtype}": str(path) for (shape, dtype), path in pools.items()}
        self.child = Child(serve_publisher, url, keyed, name="publisher")
        self.watched = Watched(self.child.pid, slices.place(self.child.pid, Role.PUBLISHER) if slices else None)
        self.slices = slices
        self.marks: dict[str, float] | None = None
        self._publishing = False

    def create(self, **spec: Any) -> str:
        self.child.send(("create", spec))
        return self.child.message(timeout=120)

    def start_publish(self, batch: int = 1, rate_hz: float | None = None, preload: bool = False,
                      first_join: bool = False) -> None:
        self.marks, self._publishing = None, True
        self.child.send(("publish", {"batch": batch, "rate_hz": rate_hz, "preload": preload,
                                     "first_join": first_join}))

    def poll(self) -> dict[str, float] | None:
        """The marks once the scan is published and closed, else None."""
        if self.marks is None and self.child.ready():
            self.marks = self.child.message()
        return self.marks

    def wait(self, timeout: float = 1200) -> dict[str, float] | None:
        """The marks of the last publication (None if nothing was published)."""
        if self.marks is None and self._publishing:
            self.marks = self.child.message(timeout=timeout)
        return self.marks

    def expected(self, name: str, n: int) -> Any:
        self.wait()  # a publication's marks come first
        self.child.send(("expected", name, n))
        return self.child.message(timeout=120)

    def unlimited(self, yes: bool) -> None:
        """Lift the publisher's quota (drain: preloading is not measured) or give it back."""
        if self.slices is not None and self.watched.slice is not None:
            quota = None if yes else self.slices.spec.quota_us(Role.PUBLISHER)
            self.watched.slice.set_quota(quota)

    def close(self) -> None:
        try:
            self.child.send(("stop",))
            self.child.result(timeout=30)
        except Exception:  # noqa: BLE001 - stopping anyway
            pass
        self.child.stop()


def scan_spec(session: str, filename: str, scan_nb: int, frames: int, shape: tuple[int, int], dtype: str,
              scheme: str | None, **extra: Any) -> dict[str, Any]:
    """ScanSpec keywords of a frame scan (frames + the scalars BLISS publishes with them)."""
    chunk_options = {"compression_scheme": scheme} if scheme and scheme != "default" else {}
    return {"session": session, "filename": filename, "scan_nb": scan_nb, "npoints": frames,
            "image_shape": tuple(shape), "image_dtype": dtype, "mca_channels": None,
            "chunk_options": chunk_options, **extra}


def publish_alone(publisher: PublisherProcess, spec: dict[str, Any]) -> dict[str, float]:
    """The publisher's marks for a scan of a session no writer serves: the pace BLISS sets alone."""
    publisher.create(**{**spec, "session": "nobody_writes"})
    publisher.start_publish()
    return publisher.wait()


def frame_bytes(spec: dict[str, Any]) -> int:
    return spec["npoints"] * int(np.prod(spec["image_shape"])) * np.dtype(spec["image_dtype"]).itemsize


def pace_mb_s(spec: dict[str, Any], marks: dict[str, float]) -> float:
    """The publisher's own pace: MB/s from its first call to its scan closed."""
    return frame_bytes(spec) / MB / (marks["closed"] - marks["begin"])
