"""One frame scan through a writer service, measured: `replay`.

Live: the clock runs from the publisher's first call to the file closed (the device reports the
scan OFF or FAULT). Drain: from PREPARED (every point already in Redis) to the file closed. The
file is checked (every frame there) and its compression ratio read; CPU, peak RSS and throttling of
every watched process come from the meter (perf/core/meter.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .meter import Meter, Use
from .publisher import MB, Mode, PublisherProcess, frame_bytes
from .stack import Service

REGISTER_TIMEOUT_S = 10  # BLISS fails a scan the writer has not registered within 10 s


@dataclass
class ScanRun:
    mode: str
    session: str
    scan: str
    ranks: int
    writers: int
    frames: int
    frame_shape: list[int]
    dtype: str
    scheme: str
    nbytes: int
    seconds: float  # live: publisher's first call → file closed; drain: PREPARED → file closed
    mb_per_s: float
    publisher_mb_per_s: float  # the publisher's own pace in this scan: first call → its scan closed
    close_after_end_s: float  # BLISS's scan end (closed by the publisher) → file closed
    compression_ratio: float
    state: str
    reason: str
    marks: dict[str, float] = field(default_factory=dict)
    use: dict[str, Use] = field(default_factory=dict)


def wait_registered(proxy, name: str) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while not proxy.scan_exists(name):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the writer did not register scan {name} within {REGISTER_TIMEOUT_S} s")
        time.sleep(0.02)


def wait_closed(proxy, name: str, publisher: PublisherProcess, timeout: float = 1800) -> float:
    """perf_counter when the device no longer reports the scan running. Polled every 50 ms while
    the publisher runs (each poll is a Tango call rank 0 answers, out of its own CPU), every 5 ms
    after the publisher closed the scan (the tail is what is measured then)."""
    deadline = time.monotonic() + timeout
    while publisher.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"publisher still running scan {name} after {timeout} s")
        time.sleep(0.05)
    while str(proxy.scan_state(name)) in ("INIT", "ON"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"scan {name} still running after {timeout} s")
        time.sleep(0.005)
    return time.perf_counter()


def check_frames(filename: str, scan_nb: int, frames: int, nbytes: int) -> tuple[float, str]:
    """(compression ratio, '' or what is wrong with the file's frames)."""
    import h5py
    import hdf5plugin  # noqa: F401  (readers need the filters)

    with h5py.File(filename, "r", locking=False) as f:
        dset = f[f"{scan_nb}.1/instrument/image/data"]
        stored = dset.id.get_storage_size()
        problem = "" if dset.shape[0] == frames else f"file has {dset.shape[0]} frames, {frames} published"
    return (nbytes / stored if stored else float("nan")), problem


def replay(service: Service, publisher: PublisherProcess, spec: dict[str, Any], mode: Mode,
           meter: Meter | None = None, batch: int = 1, rate_hz: float | None = None) -> ScanRun:
    """One scan: created, registered by the writer, published (live or preloaded; `batch` points per
    Redis event, paced at `rate_hz` or flat out), file closed."""
    name = f"{spec['scan_nb']}_ascan"
    publisher.create(**spec)
    wait_registered(service.proxy, name)
    publisher.unlimited(mode is Mode.DRAIN)
    if meter is not None:
        meter.start()
    publisher.start_publish(batch=batch, rate_hz=rate_hz, preload=mode is Mode.DRAIN)
    t_closed = wait_closed(service.proxy, name, publisher)
    use = meter.stop() if meter is not None else {}
    publisher.unlimited(False)
    marks = publisher.wait()
    state, reason = str(service.proxy.scan_state(name)), service.proxy.scan_state_reason(name)
    nbytes = frame_bytes(spec)
    ratio = float("nan")
    if state == "OFF":
        ratio, problem = check_frames(spec["filename"], spec["scan_nb"], spec["npoints"], nbytes)
        state, reason = ("FAULT", problem) if problem else (state, reason)
    t0 = marks["begin"] if mode is Mode.LIVE else marks["started"]
    seconds = t_closed - t0
    return ScanRun(mode.value, spec["session"], name, service.ranks, service.writers, spec["npoints"],
                   list(spec["image_shape"]), spec["image_dtype"],
                   spec["chunk_options"].get("compression_scheme", "default"), nbytes, seconds,
                   nbytes / MB / seconds, nbytes / MB / (marks["closed"] - marks["begin"]),
                   t_closed - marks["closed"], ratio, state, reason,
                   {k: v - marks["begin"] for k, v in marks.items()} | {"file closed": t_closed - marks["begin"]},
                   use)
