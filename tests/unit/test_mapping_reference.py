"""nxpar's channel mapping (nxpar/nexus/channel_mapping.py) against blisswriter 2.0.0's own, without
BLISS: over the mapping inputs of the real-BLISS tier's scans (recorded from BLISS 2.4.0 by
tests/bliss/test_mapping_reference.py), i.e. every channel kind the tier publishes. The reference is
the wheel launch/setup_bliss.sh downloads (make setup-bliss); without it the tests are skipped."""
from __future__ import annotations

import json

import pytest

from tests.mapping_reference import RECORDED, differences, is_known, nxpar_places, reference_available

pytestmark = pytest.mark.skipif(
    not reference_available(),
    reason="blisswriter 2.0.0's wheel is not in .cache-bliss/: `make setup-bliss` (launch/setup_bliss.sh) downloads it")

SCANS = json.loads(RECORDED.read_text())


@pytest.mark.parametrize("scan", sorted(SCANS))
def test_nxpar_maps_every_channel_as_blisswriter(scan):
    assert [d for d in differences(SCANS[scan]) if not is_known(d)] == []


def test_the_recording_has_every_channel_kind_of_the_tier():
    """Positioners, positioner groups, sampling counters (signal and statistics), MCA, the others."""
    places = {}
    for info in SCANS.values():
        for top in nxpar_places(info).values():
            places.update(top)
    kinds = {p.device_type for p in places.values()}
    assert kinds == {"positioner", "positionergroup", "samplingcounter", "mca", ""}, kinds
    assert {p.data_type for p in places.values() if p.device_type == "samplingcounter"} >= {"principal", "std", "samples"}
