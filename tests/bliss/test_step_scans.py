"""ct/sct, loopscan, timescan, ascan, dscan, a2scan, lookupscan, pointscan typed in a real BLISS 2.4
session with SCAN_SAVING.writer = "nexus", written by `mpirun -n 3 NexusWriterService`: the tree,
links, positioners and values of spec §4 against what BLISS itself published."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.bliss.expect import assert_alias_relative, assert_channels, assert_entry, assert_plot, assert_positioners, expected, text
from tests.helpers import wait_scan_done, wait_scan_exists

pytestmark = pytest.mark.bliss

# scenario → (plot signals, plot axes) as plotselect(...) asked for them in scenarios.py
STEP_SCANS = {
    "sct": None,
    "loopscan": (["diode_mean", "sim_gauss"], ["elapsed_time"]),
    "timescan_bounded": (["diode_mean", "sim_gauss"], ["elapsed_time"]),
    "ascan": (["diode_mean", "sim_gauss"], ["robx"]),
    "dscan": (["diode_mean", "sim_gauss"], ["robx"]),
    "a2scan": (["diode_mean", "sim_gauss"], ["robx"]),
    "lookupscan": (["diode_mean", "calc_double"], ["robx"]),
    "pointscan": (["diode_mean", "calc_double"], ["robx"]),
}


def test_ct_is_not_written(ran, bliss_stack):
    """ct does not save: BLISS sends no file name; the writer follows the scan (spec §3.3: "saving
    is disabled", state OFF) and writes nothing."""
    datafile = bliss_stack.data_dir / "nxbliss" / "data.h5"

    def entries() -> set[str]:
        if not datafile.exists():
            return set()
        with h5py.File(datafile, "r", locking=False) as f:
            return set(f)

    before = entries()
    (scan,) = ran("ct")
    assert scan.report["filename"] is None and scan.info["save"] is False
    wait_scan_exists(bliss_stack.proxy, scan.identifier)  # BLISS does not wait for the writer here
    assert wait_scan_done(bliss_stack.proxy, scan.identifier, timeout=30) == "OFF"
    assert entries() == before


@pytest.mark.parametrize("scenario", list(STEP_SCANS))
def test_step_scan(ran, scenario):
    (scan,) = ran(scenario)
    assert scan.report["state"] == "DONE" and scan.report["end_reason"] == "SUCCESS"
    with scan.open() as f:
        e = assert_entry(f, scan)
        assert_positioners(e, scan)
        assert_channels(e, scan)
        npoints = {"sct": 1, "loopscan": 5, "timescan_bounded": 6, "ascan": 6, "dscan": 5, "a2scan": 6,
                   "lookupscan": 3, "pointscan": 4}[scenario]
        assert len(scan.data["timer:elapsed_time"]) == npoints
        # every channel has its HDF5 fallback path (BLISS, spec §4.5), checked against the file above
        assert all(scan.report["data_paths"][c] == f"{scan.entry}/{expected(c, list(scan.data)).dataset}"
                   for c in scan.data)
        plot = STEP_SCANS[scenario]
        if plot:
            assert_plot(e, *plot)
            for item in plot[0] + plot[1]:  # the NXdata items are the datasets themselves
                channel = next(c for c in scan.data if c.rsplit(":", 1)[1] == item)
                assert e[f"plotselect/{item}"].id == e[expected(channel, list(scan.data)).dataset].id
        else:
            assert "plotselect" not in e and "default" not in e.attrs
        assert text(f.attrs["default"]).endswith(".1")


def test_motor_positions_are_the_requested_ones(ran):
    """The motors went where the scan commands said, and the file says so."""
    cases = {"ascan": ("robx", np.linspace(0, 1, 6)), "dscan": ("robx", np.linspace(1.5, 2.5, 5)),
             "lookupscan": ("roby", [1, 2, 3]), "pointscan": ("robx", [0, 0.3, 1, 1.5])}
    for scenario, (motor, positions) in cases.items():
        (scan,) = ran(scenario)
        with scan.open() as f:
            np.testing.assert_allclose(f[f"{scan.entry}/instrument/{motor}/value"][()], positions, atol=1e-3)
            assert text(f[f"{scan.entry}/instrument/{motor}/value"].attrs["units"]) == "mm"


def test_sampling_modes(ran):
    """Every sampling mode of the simulation diode: signal + stats / samples in the counter's group,
    with the device info of the mode (spec §4.5, samplingcounter)."""
    (scan,) = ran("loopscan")
    with scan.open() as f:
        inst = f[f"{scan.entry}/instrument"]
        for diode, mode in [("diode_mean", "MEAN"), ("diode_stats", "STATS"), ("diode_samples", "SAMPLES"),
                            ("diode_single", "SINGLE"), ("diode_last", "LAST"), ("diode_integrate", "INTEGRATE")]:
            assert text(inst[f"{diode}/type"][()]) == "samplingcounter" and text(inst[f"{diode}/mode"][()]) == mode
        assert {"N", "std", "var", "min", "max", "p2v", "signal"} <= set(inst["diode_stats"])
        assert inst["diode_samples/samples"].ndim == 2 and text(inst["diode_samples/samples"].attrs["interpretation"]) == "spectrum"
        assert "type" not in inst["idiode"]  # an integrating counter is a plain detector


def test_alias_links_are_relative(ran):
    (scan,) = ran("ascan")
    with scan.open() as f:
        assert_alias_relative(f[scan.entry], scan)
