"""BLISS's Sequence (bliss.scanning.group) and ScanSequence: one entry per scan, children written
like any scan, custom channels of the sequence written, no root links to the same file (§3.6)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.bliss.expect import assert_channels, assert_entry, assert_plot, text

pytestmark = pytest.mark.bliss


def test_sequence(ran):
    seq, *children = ran("sequence")
    assert seq.info["is_scan_sequence"] and len(children) == 2
    assert len(seq.data["SUBSCANS"]) == 2  # BLISS published its two children
    with seq.open() as f:
        e = assert_entry(f, seq)
        assert not [k for k in e["instrument"] if k not in ("name",) and not k.startswith("positioners")]
        for child, axis in zip(children, ["elapsed_time", "robx"]):
            ce = assert_entry(f, child)
            assert_channels(ce, child)
            signals = ["diode_mean", "sim_gauss"] if "sim_gauss" in ce["instrument"] else ["diode_mean"]
            assert_plot(ce, signals, [axis])
        assert all(not isinstance(f.get(k, getlink=True), (h5py.ExternalLink, h5py.SoftLink)) for k in f)


def test_sequence_without_channels_has_no_measurement(ran):
    seq, *_ = ran("sequence")
    with seq.open() as f:
        assert "measurement" not in f[seq.entry]


def test_scan_sequence(ran):
    seq, child = ran("scan_sequence")
    np.testing.assert_array_equal(seq.data["custom"], [1.5, 2.5, 3.5])
    with seq.open() as f:
        e = assert_entry(f, seq)
        assert_channels(e, seq)
        assert_channels(assert_entry(f, child), child)
        assert text(f[child.entry]["title"][()]).startswith("loopscan 2")
