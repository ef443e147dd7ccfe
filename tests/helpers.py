"""Shared checks: what was published must be what is in the file."""
from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle/blosc readers)
import numpy as np

from nxpar.simulate import ScanPublisher

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
