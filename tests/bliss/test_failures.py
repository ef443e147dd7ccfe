"""Scans that do not end well, and two scans at once: the file says how BLISS ended them
(end_reason), holds exactly the points BLISS published, and the writer still finishes (SUCCEEDED)."""
from __future__ import annotations

import datetime

import pytest

from tests.bliss.expect import assert_channels, assert_entry, assert_plot, assert_positioners

pytestmark = pytest.mark.bliss


@pytest.mark.parametrize("scenario,state,reason", [
    ("failing", "KILLED", "FAILURE"),
    ("aborted", "USER_ABORTED", "USER_ABORT"),
    ("timescan_aborted", "USER_ABORTED", "USER_ABORT"),
])
def test_scan_ended_early(ran, scenario, state, reason):
    (scan,) = ran(scenario)
    assert (scan.report["state"], scan.report["end_reason"]) == (state, reason)
    published = {c: len(v) for c, v in scan.data.items()}
    assert max(published.values()) >= 3
    if scenario == "failing":  # the 4th iteration raised: 3 points
        assert published["timer:elapsed_time"] == 3
    if scenario == "aborted":
        assert published["axis:robx"] < 50  # stopped well before its 101 points
    with scan.open() as f:
        e = assert_entry(f, scan)  # end_reason from BLISS, writer status SUCCEEDED
        assert_positioners(e, scan)
        assert_channels(e, scan)  # exactly the points BLISS published, per channel
        assert_plot_of_two(e, scan, "robx" if scenario == "aborted" else "elapsed_time")


def assert_plot_of_two(e, scan, axis: str) -> None:
    """plotselect(diode_mean, sim_gauss): one NXdata when both have as many points; when the scan ended
    with one short of the other, one NXdata each, as blisswriter 2.0.0 groups signals by their dataset's
    shape (writer/plots.py:238-263, NXplotID) and names split NXdata by device type (plots.py:160-176),
    `plotselect` linking the last by signal name (('diode_mean',) < ('sim_gauss',))."""
    diode = len(scan.data["simulation_diode_sampling_controller:diode_mean"])
    if diode == len(scan.data["simulation_counter_controller:sim_gauss"]):
        assert_plot(e, ["diode_mean", "sim_gauss"], [axis])
        return
    assert_plot(e, ["diode_mean"], [axis], name="plotselect_samplingcounter")
    assert_plot(e, ["sim_gauss"], [axis], name="plotselect_unknown0D")
    assert e.get("plotselect", getlink=True).path == f"/{scan.entry}/plotselect_unknown0D"


def test_two_scans_at_once(ran):
    s1, s2 = ran("two_at_once")
    def span(s):
        return [datetime.datetime.fromisoformat(s.info[k]) for k in ("start_time", "end_time")]
    (a0, a1), (b0, b1) = span(s1), span(s2)
    assert a0 < b1 and b0 < a1, "the two scans did not overlap"
    assert s1.filename == s2.filename and s1.entry != s2.entry
    with s1.open() as f:
        for scan in (s1, s2):
            assert_channels(assert_entry(f, scan), scan)
        assert_plot(f[s1.entry], ["diode_mean"], ["elapsed_time"])
