"""What spec §4 says the writer makes of BLISS's channels, written out by hand for the counters of
the tier's Beacon configuration (not computed with nxpar's mapping code, so it can disagree), and
the checks every BLISS scan of the tier gets: entry, states, links, positioners, values."""
from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import hdf5plugin  # noqa: F401  (filters of compressed frames)
import numpy as np

STATS = ("N", "std", "var", "min", "max", "p2v", "samples")
MCA_NAMES = {"spectrum": "spectrum", "realtime": "elapsed_time", "trigger_livetime": "trigger_live_time",
             "energy_livetime": "live_time", "triggers": "triggers", "events": "events",
             "icr": "trigger_count_rate", "ocr": "event_count_rate", "deadtime": "fractional_dead_time"}
MOTORS = {"robx": "mm", "roby": "mm", "robz": "deg"}


@dataclass
class Expected:
    """Where one channel must be: its dataset, its measurement link, its alias link (or None)."""
    dataset: str
    measurement: str
    alias: str | None = None


@dataclass
class BlissScan:
    """One scan as BLISS reported it (driver.py): its entry name, file, scan_info and published data."""
    report: dict
    data: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def load(cls, report: dict) -> "BlissScan":
        with np.load(report["npz"]) as z:
            data = {k.replace("|", "/"): z[k] for k in z.files}
        return cls(report, data)

    @property
    def identifier(self) -> str:
        return self.report["identifier"]

    @property
    def entry(self) -> str:
        return f"{self.report['scan_nb']}.1"

    @property
    def filename(self) -> str:
        return self.report["filename"]

    @property
    def info(self) -> dict:
        return self.report["scan_info"]

    def open(self) -> h5py.File:
        return h5py.File(self.filename, "r", locking=False)


def expected(channel: str, channels: list[str]) -> Expected:
    """Spec §4.5 for the tier's counters. `channels`: all channels of the scan (the first trigger
    device decides whether the timer is the positioner group)."""
    ctrl, _, name = channel.rpartition(":")
    motor_master = any(c.startswith("axis:") for c in channels)
    if ctrl == "axis":
        return Expected(f"instrument/{name}/value", name)
    if ctrl == "timer":  # positioner group when the timer triggers the scan, else a plain detector
        return Expected(f"instrument/{name}/{'data' if motor_master else 'value'}", name)
    if ctrl == "simulation_diode_sampling_controller":
        base, _, suffix = name.rpartition("_")
        if suffix in STATS and f"{ctrl}:{base}" in channels:  # `diode_samples` itself is a signal
            return Expected(f"instrument/{base}/{suffix}", f"{base}_{suffix}")
        return Expected(f"instrument/{name}/signal", name, f"instrument/{name}/data")
    if ctrl == "simu_mca":
        stat, _, det = name.rpartition("_")
        group = f"simu_mca_{det}"
        if stat == "spectrum":
            return Expected(f"instrument/{group}/spectrum", group, f"instrument/{group}/data")
        name = MCA_NAMES.get(stat, stat)  # ROIs keep their name
        return Expected(f"instrument/{group}/{name}", f"{group}_{name}")
    return Expected(f"instrument/{name}/data", name)


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def assert_same_values(written: np.ndarray, published: np.ndarray, what: str) -> None:
    """The file holds exactly the points BLISS published (NaN equal to NaN). Variable-length rows
    (a SAMPLES diode) are padded with NaN up to the longest row."""
    if written.shape != published.shape and written.ndim == published.ndim == 2:
        assert written.shape[0] == published.shape[0], (what, written.shape, published.shape)
        width = min(written.shape[1], published.shape[1])
        np.testing.assert_array_equal(written[:, :width], published[:, :width], err_msg=what)
        assert np.isnan(written[:, width:]).all(), what
        return
    assert written.shape == published.shape, (what, written.shape, published.shape)
    np.testing.assert_array_equal(written, published, err_msg=what)


def assert_entry(f: h5py.File, scan: BlissScan, status: str = "SUCCEEDED") -> h5py.Group:
    """§4.4 / §4.11: the NXentry with BLISS's title, times, end_reason and the writer's status."""
    root = f.attrs  # §4.2
    assert text(root["NX_class"]) == "NXroot" and text(root["creator"]) == "blissdata"
    assert text(root["publisher"]) == "bliss" and text(root["publisher_version"]) == scan.info["publisher_version"]
    assert text(root["default"]) in f
    e = f[scan.entry]
    assert text(e.attrs["NX_class"]) == "NXentry"
    assert text(e["title"][()]) == scan.report["title"]
    assert text(e["end_reason"][()]) == scan.report["end_reason"]
    assert text(e["writer/status"][()]) == status, text(e.get("writer/failure", [b""])[()])
    for key in ("start_time", "end_time"):
        assert "T" in text(e[key][()]) and text(e[key][()])[-6] in "+-", key  # ISO 8601 with timezone
    if scan.info.get("count_time"):
        assert e["scan_parameters/count_time"][()] == scan.info["count_time"]
        assert text(e["scan_parameters/count_time"].attrs["units"]) == "s"
    assert text(e["instrument"].attrs["NX_class"]) == "NXinstrument"
    assert text(e["instrument/name"][()]) == "ESRF-id00"
    return e


def assert_positioners(e: h5py.Group, scan: BlissScan) -> None:
    """§4.8: start/end snapshots as BLISS published them (units), scanned motors linked to their data."""
    pos = scan.info["positioners"]
    for group in ("positioners_start", "positioners_end", "positioners_dial_start", "positioners_dial_end"):
        assert {k: e[f"instrument/{group}/{k}"][()] for k in MOTORS} == {k: pos[group][k] for k in MOTORS}, group
        assert {k: text(e[f"instrument/{group}/{k}"].attrs["units"]) for k in MOTORS} == MOTORS
    for motor in MOTORS:
        link = e.get(f"instrument/positioners/{motor}", getlink=True)
        if f"axis:{motor}" in scan.data:
            assert isinstance(link, h5py.SoftLink) and link.path == f"/{scan.entry}/instrument/{motor}/value"
        else:
            assert e[f"instrument/positioners/{motor}"][()] == pos["positioners_start"][motor]


def assert_channels(e: h5py.Group, scan: BlissScan, skip: tuple[str, ...] = ("SUBSCANS",)) -> None:
    """§4.5 / §4.6: every channel BLISS published is its dataset, with BLISS's values, linked from
    measurement (absolute soft link); principal datasets have their alias."""
    channels = [c for c in scan.data if c not in skip]
    assert channels, "the scan published no channel"
    for channel in channels:
        exp = expected(channel, channels)
        assert exp.dataset in e, f"{channel}: no {exp.dataset} in {scan.entry}"
        ds = e[exp.dataset]
        assert_same_values(ds[()], scan.data[channel], f"{scan.entry}/{exp.dataset} ({channel})")
        interpretation = {1: None, 2: "spectrum", 3: "image"}[ds.ndim]  # flat scans: points + detector dims
        assert ds.attrs.get("interpretation") in (interpretation, interpretation and interpretation.encode()), exp.dataset
        unit = scan.info["channels"].get(channel, {}).get("unit")
        if unit and not channel.startswith("simu_mca:"):  # MCA units come from the statistic (§4.5 mca)
            assert text(ds.attrs["units"]) == unit, exp.dataset
        nx_class = "NXpositioner" if exp.dataset.endswith("/value") else "NXdetector"
        assert text(ds.parent.attrs["NX_class"]) == nx_class, exp.dataset
        link = e.get(f"measurement/{exp.measurement}", getlink=True)
        assert isinstance(link, h5py.SoftLink), f"{channel}: measurement/{exp.measurement} missing"
        assert link.path == f"/{scan.entry}/{exp.dataset}", (channel, link.path)
        if exp.alias:
            assert e[exp.alias].id == ds.id, f"{exp.alias} is not {exp.dataset}"
        fallback = scan.report["data_paths"].get(channel)  # BLISS reads there when Redis is trimmed
        if fallback:
            assert e.file[fallback].id == ds.id, (channel, fallback)


def assert_alias_relative(e: h5py.Group, scan: BlissScan) -> None:
    """§4.5: the alias (`<group>/data` → `signal`/`spectrum`) is a relative soft link."""
    channels = list(scan.data)
    aliases = [expected(c, channels) for c in channels if expected(c, channels).alias]
    assert aliases, "no principal dataset with an alias in this scan"
    for exp in aliases:
        link = e.get(exp.alias, getlink=True)
        assert isinstance(link, h5py.SoftLink) and link.path == exp.dataset.rsplit("/", 1)[1], (exp.alias, link.path)


def assert_plot(e: h5py.Group, signals: list[str], axes: list[str], name: str = "plotselect") -> h5py.Group:
    """§4.10: NXdata `name` with `signals` (first = signal, others auxiliary), `axes`, linked data;
    NXentry@default selects it."""
    plot = e[name]
    assert text(plot.attrs["NX_class"]) == "NXdata"
    assert text(plot.attrs["signal"]) == signals[0]
    assert [text(s) for s in plot.attrs.get("auxiliary_signals", [])] == signals[1:]
    assert [text(a) for a in plot.attrs.get("axes", [])] == axes
    for item in signals + axes:
        assert item in plot, f"{name}/{item} missing"
    assert text(e.attrs["default"]) == "plotselect"
    return plot

