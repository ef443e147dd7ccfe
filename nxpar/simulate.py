"""Publish BLISS-like scans through blissdata (spec §5): for tests, the demo and perf/replay_scan.py.

The scan_info follows spec §5.2 (motor, timer, diode, MCA, and a plain 2D detector stream);
frames look like detector data (Poisson background, powder rings, Bragg spots) so that
compression ratios are realistic. Frames are generated before the scan so that the publisher
is not the bottleneck.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from blissdata.redis_engine.store import DataStore
from blissdata.streams.default import Stream


def realistic_frames(count: int, shape: tuple[int, int], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """`count` distinct detector-like frames."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    cy, cx = h / 2 + 7.3, w / 2 - 4.1
    r = np.hypot(y - cy, x - cx)
    rings = np.zeros(shape)
    for radius in np.linspace(min(h, w) * 0.08, min(h, w) * 0.45, 6):
        rings += 40 * np.exp(-0.5 * ((r - radius) / 2.5) ** 2)
    base = 3.0 + 30.0 * np.exp(-r / (0.2 * max(h, w))) + rings
    frames = np.empty((count, h, w), dtype=dtype)
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "ui" else 1e9
    for i in range(count):
        lam = base.copy()
        for _ in range(20):
            sy, sx = rng.integers(0, h), rng.integers(0, w)
            lam[max(sy - 2, 0):sy + 3, max(sx - 2, 0):sx + 3] += rng.uniform(200, 5000)
        frames[i] = np.clip(rng.poisson(lam), 0, top)
    return frames


@dataclass
class ScanSpec:
    session: str
    filename: str
    scan_nb: int
    npoints: int
    image_shape: tuple[int, int] | None = (64, 64)
    image_dtype: str = "uint16"
    mca_channels: int | None = 128
    publish_npoints: bool = True  # False: unknown length (npoints = 0 in scan_info)
    chunk_options: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    save: bool = True
    data_writer: str = "nexus"
    extra_info: dict[str, Any] = field(default_factory=dict)
    samples: bool = False  # a sampling counter in SAMPLES mode: `diode_samples`, shape (-1,), ragged rows
    grid: tuple[int, int] | None = None  # a mesh: (npoints1 fast axis, npoints2 slow axis), npoints = product

    @property
    def name(self) -> str:
        return f"{self.scan_nb}_ascan"


def scan_info(spec: ScanSpec) -> dict[str, Any]:
    """scan_info as BLISS publishes it at PREPARED (spec §5.2, with a plain 2D stream)."""
    devices_in_chain = ["1001:axis", "1002:timer", "1003:diode_ctrl"]
    devices: dict[str, Any] = {
        "1001:axis": {"name": "axis", "channels": ["axis:robx"], "triggered_devices": ["1002:timer"]},
        "1002:timer": {"name": "timer", "channels": ["timer:elapsed_time", "timer:epoch"],
                       "triggered_devices": ["1003:diode_ctrl"]},
        "1003:diode_ctrl": {"name": "diode_ctrl", "channels": ["diode_ctrl:diode"]},
    }
    channels: dict[str, Any] = {
        "axis:robx": {"device": "1001:axis", "dim": 0, "display_name": "robx", "unit": "mm"},
        "timer:elapsed_time": {"device": "1002:timer", "dim": 0, "unit": "s"},
        "timer:epoch": {"device": "1002:timer", "dim": 0, "unit": "s"},
        "diode_ctrl:diode": {"device": "1003:diode_ctrl", "dim": 0},
    }
    nxdevices: dict[str, Any] = {"diode_ctrl:diode": {"device_info": {"type": "samplingcounter", "mode": "MEAN"},
                                                      "device_type": "samplingcounter", "data_type": "signal"}}
    if spec.samples:
        devices["1003:diode_ctrl"]["channels"].append("diode_ctrl:diode_samples")
        channels["diode_ctrl:diode_samples"] = {"device": "1003:diode_ctrl", "dim": 1}
        nxdevices["diode_ctrl:diode_samples"] = {"device_info": {"type": "samplingcounter", "mode": "SAMPLES"},
                                                 "device_type": "samplingcounter"}
    if spec.mca_channels:
        devices_in_chain.append("1004:simu1")
        devices["1004:simu1"] = {"name": "simu1", "type": "mca",
                                 "channels": ["simu1:spectrum_det0", "simu1:realtime_det0"]}
        channels["simu1:spectrum_det0"] = {"device": "1004:simu1", "dim": 1}
        channels["simu1:realtime_det0"] = {"device": "1004:simu1", "dim": 0}
        for ch in ("simu1:spectrum_det0", "simu1:realtime_det0"):
            nxdevices[ch] = {"device_info": {"type": "mca"}, "device_type": "mca"}
        devices["1002:timer"]["triggered_devices"].append("1004:simu1")
    if spec.image_shape:
        devices_in_chain.append("1005:cam")
        devices["1005:cam"] = {"name": "cam", "channels": ["cam:image"]}
        channels["cam:image"] = {"device": "1005:cam", "dim": 2}
        devices["1002:timer"]["triggered_devices"].append("1005:cam")
    now = datetime.datetime.now().astimezone().isoformat()
    info = {
        "name": spec.name, "scan_nb": spec.scan_nb, "type": "ascan",
        "title": spec.title or f"ascan robx 0 1 {spec.npoints} 0.1",
        "session_name": spec.session, "user_name": "opid00", "save": spec.save,
        "data_writer": spec.data_writer, "data_policy": "None", "publisher": "bliss", "publisher_version": "2.4.0",
        "writer_options": {"chunk_options": dict(spec.chunk_options), "separate_scan_files": None},
        "filename": spec.filename, "start_time": now,
        "npoints": spec.npoints if spec.publish_npoints else 0, "count_time": 0.1,
        "acquisition_chain": {"axis": {"top_master": "1001:axis", "devices": devices_in_chain}},
        "devices": devices, "channels": channels,
        "positioners": {"positioners_start": {"robx": 0.0, "roby": 2.5},
                        "positioners_dial_start": {"robx": 0.0, "roby": 2.5},
                        "positioners_units": {"robx": "mm", "roby": "mm"}},
        "instrument": {"@NX_class": "NXinstrument"},
        "nexuswriter": {"instrument_info": {"name": "ESRF-id00", "name@short_name": "id00"},
                        "masterfiles": {}, "devices": nxdevices},
        "scan_meta_categories": ["instrument", "nexuswriter", "positioners", "technique"],
        "technique": {"@NX_class": "NXcollection", "name": "XRD"},
        "display_extra": {"plotselect": ["diode_ctrl:diode"]},
    }
    if spec.grid:  # a mesh: robx fast (npoints1), roby slow (npoints2); BLISS lists the fast motor first
        n1, n2 = spec.grid
        devices["1001:axis"]["channels"].append("axis:roby")
        channels["axis:roby"] = {"device": "1001:axis", "dim": 0, "display_name": "roby", "unit": "mm"}
        info.update({"type": "amesh", "data_dim": 2, "npoints1": n1, "npoints2": n2,
                     "title": spec.title or f"amesh robx 0 1 {n1 - 1} roby 0 1 {n2 - 1} 0.1"})
    info.update(spec.extra_info)
    return info


class ScanPublisher:
    """Plays BLISS's part: create → prepare → start → data → stop → close (spec §5.3)."""

    def __init__(self, url: str, spec: ScanSpec, frames: np.ndarray | None = None) -> None:
        self.store = DataStore(url)
        self.spec = spec
        self.frames = frames
        if spec.image_shape and frames is None:
            self.frames = realistic_frames(min(spec.npoints, 8) or 1, spec.image_shape, spec.image_dtype)
        self.info = scan_info(spec)
        identity = {"name": "ascan", "number": spec.scan_nb, "data_policy": "None",
                    "session": spec.session, "path": spec.filename}
        self.scan = self.store.create_scan(identity, info={"name": spec.name, **self.info})
        self.streams: dict[str, Any] = {}
        for name, dtype, shape in self._stream_defs():
            self.streams[name] = self.scan.create_stream(Stream.make_definition(name, dtype, shape))
        self.sent = 0

    def _stream_defs(self) -> list[tuple[str, str, tuple[int, ...]]]:
        defs = [("axis:robx", "float64", ()), ("timer:elapsed_time", "float64", ()),
                ("timer:epoch", "float64", ()), ("diode_ctrl:diode", "float64", ())]
        if self.spec.grid:
            defs.append(("axis:roby", "float64", ()))
        if self.spec.samples:
            defs.append(("diode_ctrl:diode_samples", "float64", (-1,)))
        if self.spec.mca_channels:
            defs += [("simu1:spectrum_det0", "uint32", (self.spec.mca_channels,)),
                     ("simu1:realtime_det0", "float64", ())]
        if self.spec.image_shape:
            defs.append(("cam:image", self.spec.image_dtype, tuple(self.spec.image_shape)))
        return defs

    # expected values, so tests can compare what was written with what was published
    def expected(self, name: str, n: int, start: int = 0) -> np.ndarray:
        """Points [start, n) of a channel."""
        i = np.arange(start, n)
        if name == "axis:robx" and self.spec.grid:
            return (i % self.spec.grid[0]) / max(self.spec.grid[0] - 1, 1)
        if name == "axis:roby":
            return (i // self.spec.grid[0]) / max(self.spec.grid[1] - 1, 1)
        if name == "axis:robx":
            return i / max(self.spec.npoints - 1, 1)
        if name == "timer:elapsed_time":
            return i * 0.1
        if name == "timer:epoch":
            return 1.7e9 + i * 0.1
        if name == "diode_ctrl:diode":
            return np.sin(i / 7.0) * 100 + 1000
        if name == "diode_ctrl:diode_samples":  # ragged: 1 to 5 samples per point
            return [k + 0.5 * np.arange(1 + (k * 7) % 5) for k in i]
        if name == "simu1:spectrum_det0":
            ch = np.arange(self.spec.mca_channels)
            return ((i[:, None] * 3 + ch[None, :]) % 997).astype("uint32")
        if name == "simu1:realtime_det0":
            return 0.1 + i * 1e-4
        if name == "cam:image":
            return self.frames[i % len(self.frames)]
        raise KeyError(name)

    def prepare_start(self) -> None:
        self.scan.info = {**self.info}
        self.scan.prepare()
        self.scan.start()

    def send(self, count: int, batch: int = 1) -> None:
        """Publish the next `count` points, `batch` points per Redis event."""
        end = self.sent + count
        while self.sent < end:
            n = min(batch, end - self.sent)
            for name, stream in self.streams.items():
                values = self.expected(name, self.sent + n, self.sent)
                if isinstance(values, list):  # ragged rows go one by one
                    for row in values:
                        stream.send(row)
                else:
                    stream.send(values)
            self.sent += n

    def stop_close(self, end_reason: str = "SUCCESS", final_info: dict[str, Any] | None = None) -> None:
        """final_info: keys BLISS adds or changes in the scan_info published at close."""
        if end_reason == "SUCCESS":
            self.scan.stop()
        info = {**self.scan.info, **(final_info or {})}
        info["end_time"] = datetime.datetime.now().astimezone().isoformat()
        info["end_reason"] = end_reason
        pos = dict(info["positioners"])
        pos["positioners_end"] = {"robx": 1.0, "roby": 2.5}
        pos["positioners_dial_end"] = {"robx": 1.0, "roby": 2.5}
        info["positioners"] = pos
        self.scan.info = info
        self.scan.close()

    def run(self, batch: int = 1, rate_hz: float | None = None, preload: bool = False) -> float:
        """The whole scan; returns seconds spent publishing.

        preload: all points are in Redis before PREPARED (the writer only looks at a scan from
        PREPARED on), so the writer then drains Redis flat out: measures the writer alone.
        """
        if not preload:
            self.prepare_start()
        t0 = time.perf_counter()
        while self.sent < self.spec.npoints:
            self.send(min(batch, self.spec.npoints - self.sent), batch)
            if rate_hz:  # paced by the clock, so the time spent sending does not slow the rate
                time.sleep(max(t0 + self.sent / rate_hz - time.perf_counter(), 0.0))
        for stream in self.streams.values():
            stream.join()
        elapsed = time.perf_counter() - t0
        if preload:
            self.prepare_start()
        self.stop_close()
        return elapsed
