"""What the tests share: waiting for the device, publishing scans, checking files against what
was published (what was published must be what is in the file)."""
from __future__ import annotations

import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle/blosc readers)
import numpy as np

from launch.simulate import ScanPublisher

ROOT = Path(__file__).resolve().parent.parent

PATHS = {
    "axis:robx": "instrument/robx/value",
    "axis:roby": "instrument/roby/value",
    "axis:robz": "instrument/robz/value",
    "timer:elapsed_time": "instrument/elapsed_time/data",
    "timer:epoch": "instrument/epoch/data",
    "diode_ctrl:diode": "instrument/diode/signal",
    "diode_ctrl:diode_samples": "instrument/diode/samples",
    "simu1:spectrum_det0": "instrument/simu1_det0/spectrum",
    "simu1:realtime_det0": "instrument/simu1_det0/elapsed_time",
    "cam:image": "instrument/image/data",
    "fake_ctrl:fake0D": "instrument/fake0D/data",
    "fake_ctrl:fake1D": "instrument/fake1D/data",
    "fake_ctrl:fake2D": "instrument/fake2D/data",
}


def padded(rows: list[np.ndarray], fill: float = np.nan) -> np.ndarray:
    """Ragged rows as the writer stores them: padded with the fill value to the longest row."""
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), fill)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def assert_file_matches(pub: ScanPublisher, npoints: int, entry: str | None = None,
                        keepshape: bool = False, paths: dict[str, str] | None = None) -> h5py.File:
    """keepshape: the datasets of a mesh have the grid shape (npoints2, npoints1, ...), C order.
    paths: dataset paths of streams not in (or different from) PATHS."""
    entry = entry or f"{pub.spec.scan_nb}.1"
    where = {**PATHS, **(paths or {})}
    with h5py.File(pub.spec.filename, "r", locking=False) as f:
        e = f[entry]
        for stream in pub.streams:
            data = e[where[stream]][()]
            expected = pub.expected(stream, npoints)
            if isinstance(expected, list):
                expected = padded(expected)
            if keepshape:
                n1, n2 = pub.spec.grid
                assert data.shape[:2] == (max(n2, -(-npoints // n1)), n1), (stream, data.shape)
                data = data.reshape((-1,) + data.shape[2:])
                assert np.all(np.isnan(data[npoints:])) if data.dtype.kind == "f" else not data[npoints:].any()
                data = data[:npoints]
            assert data.shape == expected.shape, (stream, data.shape, expected.shape)
            assert data.dtype == expected.dtype or stream != "cam:image", (stream, data.dtype)
            np.testing.assert_array_equal(data, expected, err_msg=stream)
        assert e["writer/status"][()] == b"SUCCEEDED"


def assert_disk_checks_refuse(proxy, name: str, required_mb: int, recommended_mb: int) -> None:
    """The device's disk checks for scan `name`, answered before the scan starts, say the space is short."""
    assert proxy.scan_disk_space_error(name) == f"Free disk space below {required_mb} MB"
    assert proxy.scan_disk_space_warning(name) == f"Free disk space below {recommended_mb} MB"
    assert proxy.scan_has_required_disk_space(name) is False


def wait_scan_done(proxy, name: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = str(proxy.scan_state(name))
        if state in ("OFF", "FAULT"):
            return state
        time.sleep(0.05)
    raise TimeoutError(f"scan {name} still {proxy.scan_state(name)} after {timeout}s")


def assert_done_without_warning(proxy, name: str) -> None:
    """The scan ended OFF (else its reason is shown) and scan_info has no WARNING line for it."""
    assert wait_scan_done(proxy, name) == "OFF", proxy.scan_state_reason(name)
    assert not [row for row in proxy.scan_info if row.startswith(name) and "WARNING" in row]


def wait_scan_exists(proxy, name: str, timeout: float = 10) -> None:
    """BLISS fails the scan if the writer has not registered it within 10 s."""
    deadline = time.monotonic() + timeout
    while not proxy.scan_exists(name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"writer did not receive scan {name} after {timeout}s")
        time.sleep(0.05)


def wait_progress(proxy, name: str, text: str, timeout: float = 20) -> None:
    """Until the scan_progress line of scan `name` contains `text` (e.g. '10pts-10pts')."""
    deadline = time.monotonic() + timeout
    while not any(line.strip().startswith(f"{name}:") and text in line for line in proxy.scan_progress):
        if time.monotonic() > deadline:
            raise TimeoutError(f"scan_progress never showed {text!r}: {list(proxy.scan_progress)}")
        time.sleep(0.05)


def start_scan(proxy, url: str, spec, points: int = 0, batch: int = 1):
    """A scan the writer has registered, PREPARED and STARTED, with its first `points` published."""
    pub = ScanPublisher(url, spec)
    wait_scan_exists(proxy, spec.name)
    pub.prepare_start()
    if points:
        pub.send(points, batch=batch)
    return pub


def run_scan(proxy, url: str, spec, batch: int = 1, expect: str = "OFF"):
    """A whole scan, published as BLISS does; the writer must end it in state `expect`."""
    pub = ScanPublisher(url, spec)
    wait_scan_exists(proxy, spec.name)
    pub.run(batch=batch)
    state = wait_scan_done(proxy, spec.name)
    assert state == expect, proxy.scan_state_reason(spec.name)
    return pub
