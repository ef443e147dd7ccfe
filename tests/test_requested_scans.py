"""RequestedScans's bookkeeping (pure logic, no services): what blisswriter 3.0.0 promises BLISS."""
from __future__ import annotations

import pytest

from nxpar.driver.requested_scans import MAPPING_ROUTE, MAX_REMEMBERED, RejectedScan, RequestedScans, UnknownScan, h5map_plan_only
from nxpar.protocol.options import SaveOptions, Tuning


def route() -> RequestedScans:
    return RequestedScans("unit", channel=None, url_provider=lambda: "", options=SaveOptions(), tuning=Tuning(),
                        policy=MAPPING_ROUTE)


def test_the_last_200_scans_are_remembered():
    r = route()
    for i in range(MAX_REMEMBERED + 5):
        r.remember(f"k{i}", RejectedScan(f"k{i}", f"reason {i}"))
    assert len(r.records()) == MAX_REMEMBERED
    assert r.state("k4") == "UNKNOWN" and r.state("k5") == "FAULT" and r.reason("k204") == "reason 204"
    with pytest.raises(UnknownScan, match="No scan with key 'k0' was requested"):
        r.reason("k0")
    with pytest.raises(UnknownScan):
        r.warnings("k0")


def test_warnings_are_collected_once_each():
    r = route()
    scan = RejectedScan("k", "r")
    r.remember("k", scan)
    assert r.warnings("k") == []
    scan.warning = "writing is 12 points behind the publisher"
    assert r.warnings("k") == r.warnings("k") == ["writing is 12 points behind the publisher"]


def test_the_mapping_route_needs_an_h5map():
    with pytest.raises(ValueError, match="scan_info has no 'h5maps'"):
        h5map_plan_only({"filename": "/tmp/x.h5", "h5maps": {}}, SaveOptions(), "")
