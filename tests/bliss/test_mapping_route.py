"""BLISS 2.4.0's "mapping" writer route against nxpar's BlissWriter device (issue 16).

BLISS itself publishes the h5map (`scan_info["h5maps"]`, from the tier's stand-in generator in
launch/bliss_env/blisswriter/mapping/h5map.py) and its own ExternalTangoMappingWriter finds the
BlissWriter device by class and session, calls SaveScan and checks the scan state every 3 s.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from blissdata.redis_engine.store import DataStore
from tango import DevState

from tests.bliss.expect import BlissScan
from tests.helpers import wait_scan_done


@pytest.fixture(scope="module")
def mapped(bliss):
    return [BlissScan.load(r) for r in bliss.run("mapping_scans")["scans"]]


def test_bliss_publishes_the_h5map_and_blisswriter_writes_it(mapped, bliss_stack):
    writer = bliss_stack.bliss_writer
    assert len(mapped) == 2
    for scan in mapped:
        key = scan.report["key"]
        assert scan.report["state"] == "DONE"  # BLISS's writer checks passed: SaveScan, scan ON, no FAULT
        assert scan.report["scan_info"]["data_writer"] == "mapping"
        published = DataStore(bliss_stack.env["REDIS_DATA_URL"]).load_scan(key).info  # what BLISS put in Redis
        assert list(published["h5maps"]) == [scan.filename] and published["end_reason"] == "SUCCESS"
        assert wait_scan_done(writer, key, timeout=60) == "OFF", writer.scan_state_reason(key)
        assert writer.scan_state_reason(key) == "Finished succesfully"
        assert writer.GetWarningCount(key) == 0
        entry = f"{scan.report['scan_nb']}.1"
        with h5py.File(scan.filename, "r", locking=False) as f:
            e = f[entry]
            assert e["writer/status"][()] == b"SUCCEEDED"
            assert e["title"][()].decode() == scan.report["title"]
            fallback = {c: p for c, p in scan.report["data_paths"].items() if p}  # BLISS's HDF5 fallback paths
            assert any(c.endswith("diode_mean") for c in fallback) and any(c.endswith("sim_gauss") for c in fallback)
            for channel, data_path in fallback.items():  # every channel, with the values BLISS published
                np.testing.assert_array_equal(f[data_path][()], scan.data[channel], err_msg=channel)
            links = list(e["measurement"])
            assert len(links) >= 3 and any(n.endswith("diode_mean") for n in links)
            assert all(isinstance(e["measurement"][n], h5py.Dataset) for n in links)
    # the session's NexusWriter saw the scans and left them to BlissWriter (no second file tree)
    for scan in mapped:
        assert wait_scan_done(bliss_stack.proxy, scan.identifier, timeout=60) == "OFF"
        assert list(bliss_stack.proxy.scan_url(scan.identifier)) == []
    assert writer.State() in (DevState.ON, DevState.RUNNING)


def test_nexus_route_still_publishes_no_h5map(ran):
    """The "nexus" scans of the tier are planned from scan_info, as before issue 16."""
    scan = ran("ascan")[0]
    assert "h5maps" not in scan.report["scan_info"]
