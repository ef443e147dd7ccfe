"""The channel mapping against the reference, on the scan_info BLISS 2.4.0 really published: BLISS's
side of the tier is blisswriter 2.0.0's own mapping (launch/bliss_env/blisswriter/mapping/), so the
fallback paths BLISS gave its streams are the reference's; nxpar's mapping must give the same place
to every channel of every kind the tier publishes (tests/mapping_reference.py says what is compared).

`NXPAR_BLISS_RECORD_MAPPING=1 make test-bliss` also writes the mapping inputs of these scans to
tests/unit/data/bliss_tier_mapping_inputs.json, over which the fast tier compares the two without BLISS.
"""
from __future__ import annotations

import json
import os

import pytest

from tests.mapping_reference import RECORDED, differences, is_known, mapping_inputs, reference_places

pytestmark = pytest.mark.bliss

# between them every channel kind of the tier: the diodes in every mode, simulation and calc counters,
# the timer (positioner group or detector), one and two motors (positioners, positioner group), meshes
# (nD: no group), the MCA (spectra, statistics, ROI), 1D/2D fake detectors, sequences (SUBSCANS, a
# custom channel) and both writers' routes
SCENARIOS = ("sct", "loopscan", "ascan", "a2scan", "amesh", "a3mesh", "lookupscan", "mca",
             "fake_detectors", "sequence", "scan_sequence")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_nxpar_maps_every_channel_as_blisswriter(ran, scenario):
    for scan in ran(scenario):
        assert [d for d in differences(scan.info) if not is_known(d)] == [], scan.identifier


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_bliss_fallback_paths_are_the_references(ran, scenario):
    """The paths BLISS published for its streams (Hdf5BackedStream) come from the reference: BLISS's
    side really ran blisswriter 2.0.0's mapping."""
    compared = 0
    for scan in ran(scenario):
        places = reference_places(scan.info)
        expected = {ch: f"{scan.report['scan_nb']}.1/{place.primary_path}"
                    for top in places.values() for ch, place in top.items()}
        published = {ch: path for ch, path in scan.report["data_paths"].items() if path}
        assert published == {ch: expected[ch] for ch in published}, scan.identifier
        compared += len(published)
    assert compared, f"{scenario}: BLISS published no fallback path"


def test_record_mapping_inputs(ran):
    """Only with NXPAR_BLISS_RECORD_MAPPING=1: the fast tier's recording of the scans above."""
    if os.environ.get("NXPAR_BLISS_RECORD_MAPPING") != "1":
        pytest.skip("recording only with NXPAR_BLISS_RECORD_MAPPING=1")
    recorded = {f"{scenario}/{i}": mapping_inputs(scan.info)
                for scenario in SCENARIOS for i, scan in enumerate(ran(scenario))}
    RECORDED.parent.mkdir(exist_ok=True)
    RECORDED.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
