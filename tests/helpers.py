"""Shared checks: what was published must be what is in the file."""
from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle/blosc readers)
import numpy as np

from nxpar.simulate import ScanPublisher

PATHS = {
    "axis:robx": "instrument/robx/value",
    "timer:elapsed_time": "instrument/elapsed_time/data",
    "timer:epoch": "instrument/epoch/data",
    "diode_ctrl:diode": "instrument/diode/signal",
    "simu1:spectrum_det0": "instrument/simu1_det0/spectrum",
    "simu1:realtime_det0": "instrument/simu1_det0/elapsed_time",
    "cam:image": "instrument/image/data",
}


def assert_file_matches(pub: ScanPublisher, npoints: int, entry: str | None = None) -> h5py.File:
    entry = entry or f"{pub.spec.scan_nb}.1"
    with h5py.File(pub.spec.filename, "r", locking=False) as f:
        e = f[entry]
        for stream in pub.streams:
            data = e[PATHS[stream]][()]
            expected = pub.expected(stream, npoints)
            assert data.shape == expected.shape, (stream, data.shape, expected.shape)
            assert data.dtype == expected.dtype or stream != "cam:image", (stream, data.dtype)
            np.testing.assert_array_equal(data, expected, err_msg=stream)
        assert e["writer/status"][()] == b"SUCCEEDED"
