"""Publish BLISS-like scans through blissdata, as BLISS 2.4 does: for tests, the demo and perf/replay_scan.py.

The scan_info is BLISS's (motor, timer, diode, MCA, and a plain 2D detector stream);
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
    grid: tuple[int, ...] | None = None  # a mesh: (npoints1 fast axis, npoints2, [npoints3]), npoints = product
    backnforth: bool = False  # mesh: the fast motor runs backwards on odd lines (amesh(..., backnforth=True))
    mca_detectors: int = 1  # MCA detector channels det0, det1, ...
    mca_rois: bool = False  # an MCA ROI counter `roi_a_det<i>` per detector
    fakes: bool = False  # `fake_ctrl` with fake0D, fake1D (8,), fake2D (6, 5): no nexuswriter device type
    timer_master: bool = False  # a loopscan: the timer is the top master, no motor

    @property
    def name(self) -> str:
        return f"{self.scan_nb}_ascan"

    @property
    def motors(self) -> list[str]:
        """Motor channels, fast first (as BLISS lists a mesh's motors)."""
        if self.timer_master:
            return []
        return [f"axis:{m}" for m in ("robx", "roby", "robz")[:max(len(self.grid or ()), 1)]]


MOTOR_DIM = {"axis:robx": 0, "axis:roby": 1, "axis:robz": 2}
FAKE_SHAPES = {"fake_ctrl:fake0D": ("float64", ()), "fake_ctrl:fake1D": ("float32", (8,)),
               "fake_ctrl:fake2D": ("uint16", (6, 5))}


def _mca(spec: ScanSpec, devices: dict[str, Any], channels: dict[str, Any], nxdevices: dict[str, Any]) -> None:
    """simu1: spectrum_det<i> + realtime_det<i> (+ roi_a_det<i>) per detector, as BLISS's MCA counters."""
    names = []
    for k in range(spec.mca_detectors):
        names += [f"simu1:spectrum_det{k}", f"simu1:realtime_det{k}"]
        names += [f"simu1:roi_a_det{k}"] if spec.mca_rois else []
    devices["1004:simu1"] = {"name": "simu1", "type": "mca", "channels": names}
    for ch in names:
        channels[ch] = {"device": "1004:simu1", "dim": 1 if "spectrum" in ch else 0}
        nxdevices[ch] = {"device_info": {"type": "mca"}, "device_type": "mca"}


def scan_info(spec: ScanSpec) -> dict[str, Any]:
    """scan_info as BLISS publishes it at PREPARED (with a plain 2D stream)."""
    devices_in_chain = ["1001:axis", "1002:timer", "1003:diode_ctrl"]
    devices: dict[str, Any] = {
        "1001:axis": {"name": "axis", "channels": spec.motors, "triggered_devices": ["1002:timer"]},
        "1002:timer": {"name": "timer", "channels": ["timer:elapsed_time", "timer:epoch"],
                       "triggered_devices": ["1003:diode_ctrl"]},
        "1003:diode_ctrl": {"name": "diode_ctrl", "channels": ["diode_ctrl:diode"]},
    }
    channels: dict[str, Any] = {
        **{m: {"device": "1001:axis", "dim": 0, "display_name": m.split(":")[1], "unit": "mm"} for m in spec.motors},
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
        _mca(spec, devices, channels, nxdevices)
        devices["1002:timer"]["triggered_devices"].append("1004:simu1")
    if spec.image_shape:
        devices_in_chain.append("1005:cam")
        devices["1005:cam"] = {"name": "cam", "channels": ["cam:image"]}
        channels["cam:image"] = {"device": "1005:cam", "dim": 2}
        devices["1002:timer"]["triggered_devices"].append("1005:cam")
    if spec.fakes:
        devices_in_chain.append("1006:fake_ctrl")
        devices["1006:fake_ctrl"] = {"name": "fake_ctrl", "channels": list(FAKE_SHAPES)}
        channels.update({ch: {"device": "1006:fake_ctrl", "dim": len(shape)} for ch, (_, shape) in FAKE_SHAPES.items()})
        devices["1002:timer"]["triggered_devices"].append("1006:fake_ctrl")
    top = "axis"
    if spec.timer_master:  # loopscan: the timer is the top master (and the first trigger)
        devices_in_chain.remove("1001:axis")
        del devices["1001:axis"]
        top = "timer"
    now = datetime.datetime.now().astimezone().isoformat()
    info = {
        "name": spec.name, "scan_nb": spec.scan_nb, "type": "ascan",
        "title": spec.title or f"ascan robx 0 1 {spec.npoints} 0.1",
        "session_name": spec.session, "user_name": "opid00", "save": spec.save,
        "data_writer": spec.data_writer, "data_policy": "None", "publisher": "bliss", "publisher_version": "2.4.0",
        "writer_options": {"chunk_options": dict(spec.chunk_options), "separate_scan_files": None},
        "filename": spec.filename, "start_time": now,
        "npoints": spec.npoints if spec.publish_npoints else 0, "count_time": 0.1,
        "acquisition_chain": {top: {"top_master": devices_in_chain[0], "devices": devices_in_chain}},
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
    info.update(_scan_type(spec))
    info.update(spec.extra_info)
    return info


def _scan_type(spec: ScanSpec) -> dict[str, Any]:
    """What a loopscan or a mesh changes: type, title, grid (robx fast = npoints1, then roby, robz)."""
    if spec.timer_master:
        return {"type": "loopscan", "title": spec.title or f"loopscan {spec.npoints} 0.1"}
    if not spec.grid:
        return {}
    ranges = " ".join(f"{m.split(':')[1]} 0 1 {n - 1}" for m, n in zip(spec.motors, spec.grid))
    return {"type": f"a{len(spec.grid)}mesh" if len(spec.grid) > 2 else "amesh", "data_dim": len(spec.grid),
            **{f"npoints{i}": n for i, n in enumerate(spec.grid, 1)}, "title": spec.title or f"amesh {ranges} 0.1"}


class ScanPublisher:
    """Plays BLISS's part: create → prepare → start → data → stop → close."""

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
        defs = [(m, "float64", ()) for m in self.spec.motors[:1]]
        defs += [(name, "float64", ()) for name in ("timer:elapsed_time", "timer:epoch", "diode_ctrl:diode")]
        defs += [(m, "float64", ()) for m in self.spec.motors[1:]]
        if self.spec.samples:
            defs.append(("diode_ctrl:diode_samples", "float64", (-1,)))
        for ch in self.info["devices"].get("1004:simu1", {}).get("channels", []):
            defs.append((ch, "uint32", (self.spec.mca_channels,)) if "spectrum" in ch else (ch, "float64", ()))
        if self.spec.image_shape:
            defs.append(("cam:image", self.spec.image_dtype, tuple(self.spec.image_shape)))
        if self.spec.fakes:
            defs += [(ch, dtype, shape) for ch, (dtype, shape) in FAKE_SHAPES.items()]
        return defs

    # expected values, so tests can compare what was written with what was published
    def expected(self, name: str, n: int, start: int = 0) -> np.ndarray:
        """Points [start, n) of a channel."""
        i = np.arange(start, n)
        if name in MOTOR_DIM and self.spec.grid:
            return self._mesh_position(name, i)
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
        if name.startswith("simu1:"):
            return self._mca_expected(name, i)
        if name in FAKE_SHAPES:
            dtype, shape = FAKE_SHAPES[name]
            size = int(np.prod(shape, dtype=int))
            return (i[:, None] * 3 + np.arange(size)[None, :] + 0.5 * (dtype != "uint16")).astype(dtype).reshape(
                (len(i),) + shape)
        if name == "cam:image":
            return self.frames[i % len(self.frames)]
        raise KeyError(name)

    def _mesh_position(self, name: str, i: np.ndarray) -> np.ndarray:
        """Motor `name` at points i of the mesh (C order, fast motor first in spec.grid)."""
        grid, dim = self.spec.grid, MOTOR_DIM[name]
        index = i // int(np.prod(grid[:dim], dtype=int))
        if dim < len(grid) - 1:  # the slowest motor goes on past its last line when more points come
            index = index % grid[dim]
        if dim == 0 and self.spec.backnforth:
            index = np.where((i // grid[0]) % 2 == 1, grid[0] - 1 - index, index)
        return index / max(grid[dim] - 1, 1)

    def _mca_expected(self, name: str, i: np.ndarray) -> np.ndarray:
        k = int(name.rsplit("_det", 1)[1])
        if "spectrum" in name:
            ch = np.arange(self.spec.mca_channels)
            return ((i[:, None] * 3 + ch[None, :] + 5 * k) % 997).astype("uint32")
        if "realtime" in name:
            return 0.1 + i * 1e-4 + k * 1e-5
        return 2.0 * i + k  # roi_a

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
