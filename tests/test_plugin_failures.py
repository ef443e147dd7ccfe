"""Lima2 / Mosca sources that fail while the writer ranks read them, on the real stack: the Mosca
server stops mid-scan, a Lima2 receiver's file is unreadable when its frames are copied. The
channel is given up with a warning naming it, what was written before stays, the other channels
are complete and the scan ends OFF, never FAULT (writers/share_reads.py, RowWrites)."""
from __future__ import annotations

import os
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from launch.simulate import realistic_frames
from tests.helpers import wait_scan_done, wait_scan_exists
from tests.mapping_client import MappingClient

pytest.importorskip("blissdata_lima2")
pytest.importorskip("blissdata_mosca")

from tests.mosca_standin import spectra as served_spectra  # noqa: E402
from tests.plugin_publish import ConductorVersion, Lima2Files, MoscaStandInServer, PluginScan, service_env, write_mosca_files  # noqa: E402
from tests.test_blisswriter import register_cli  # noqa: E402
from tests.test_mapping_route_plugins import MappedPluginScan, warnings_of  # noqa: E402
from tests.test_plugin_streams import spectra, wait_for, wait_frames  # noqa: E402

SPECTRUM = 64
SESSION = "plugfail"  # a service of its own: scans are keyed by name on the device
MAPPED = "mapplugfail"  # BLISS's "mapping" route: a BlissWriter in a service of its own


def writer(services):
    """3 ranks, plugins installed, Lima2 frames copied (the Mosca server case does not depend on it)."""
    return services.get(3, (SESSION,), extra_env=service_env(plugins=True), disable_external_hdf5=True,
                        copy_non_external=True)[SESSION]


def warned(proxy, scan: str, *texts: str) -> bool:
    return any(scan in row and all(t in row for t in texts) for row in proxy.scan_info)


def test_a_mosca_server_stopped_mid_scan_is_a_warning_not_a_fault(services, stack, data_dir):
    """The writer ranks read the spectra from the Mosca server (Mosca does not save); rank 0 has
    seen 6 points on the server, then the server stops before the writers read points 3..5: those
    are not written, the channel is given up with a warning, the scan ends OFF with the spectra
    served before the stop and every other channel complete."""
    proxy = writer(services)
    device = "id00/mosca/fx31"
    server = MoscaStandInServer(stack, device, detectors=[0], size=SPECTRUM)
    filename = str(data_dir / "mosca_stopped.h5")
    not_saved = {"file_path": str(data_dir), "file_prefix": "fx_", "data_path": "/entry_0000/fx/data",
                 "file_format": None, "points_per_file": 100, "saving_enabled": False, "enabled_detectors": [0]}
    pub = PluginScan(stack.env["REDIS_DATA_URL"], SESSION, filename, 31, 9, mosca_url=device,
                     mosca={0: {"size": SPECTRUM, "saving": not_saved}}).create()
    try:
        wait_scan_exists(proxy, "31_ascan")
        pub.prepare_start()
        pub.points(0, 3)
        server.proxy.acquire(3)
        pub.mosca_status(2, -1)
        wait_frames(filename, "31.1/instrument/fx_det0/spectrum", served_spectra([0], SPECTRUM, 0, 3)[0])
        server.proxy.acquire(6)  # rank 0 asks the server 4 times a second: it sees 6 points ...
        time.sleep(1.5)
    finally:
        server.stop()  # ... which the writers never read: Mosca's events report them only now
    wait_for("the server's failure seen by rank 0",
             lambda: warned(proxy, "31_ascan", f"{device} cannot be read"), timeout=20)
    pub.points(3, 6)
    pub.mosca_status(5, -1)
    channel = "fx:spectrum:spec_det00"
    wait_for("the writers' failure in scan_info",
             lambda: warned(proxy, "31_ascan", channel, "points 3..5 could not be read by the writers"), timeout=20)
    pub.points(6, 9)
    pub.mosca_status(8, -1)
    pub.stop_close()
    assert wait_scan_done(proxy, "31_ascan") == "OFF", proxy.scan_state_reason("31_ascan")
    with h5py.File(filename, "r", locking=False) as f:
        e = f["31.1"]
        np.testing.assert_array_equal(e["instrument/fx_det0/spectrum"][()], served_spectra([0], SPECTRUM, 0, 3)[0])
        np.testing.assert_array_equal(e["instrument/fx_det0/trigger_count_rate"][()], 1000.0 + np.arange(9))
        np.testing.assert_array_equal(e["measurement/elapsed_time"][()], np.arange(9) * 0.1)
        assert e["writer/status"][()] == b"SUCCEEDED"


def test_an_unreadable_lima2_receiver_file_is_a_warning_not_a_fault(services, stack, data_dir):
    """Lima2 frames copied during the scan from the receivers' files: frames 0..3 are copied, then
    a receiver's second file, complete in its metadata, holds a corrupt compressed frame when its
    frames are copied: the channel is given up with a warning, the frames copied before stay, the
    scan ends OFF with its other channels complete. (A truncated file is never copied from at all:
    it does not count as closed, tests/test_lima2_receivers.py.)"""
    proxy = writer(services)
    conductor = ConductorVersion()
    scan_dir = data_dir / "scan0032"
    frames = realistic_frames(10, (16, 12), seed=32)
    files = Lima2Files(scan_dir, "eiger", "frame", (16, 12), receivers=2, per_file=2)
    lima2 = {"eiger:frame": {"shape": (16, 12), "dtype": "uint16", "master_file": list(files.master_file)}}
    filename = str(data_dir / "lima2_unreadable.h5")
    pub = PluginScan(stack.env["REDIS_DATA_URL"], SESSION, filename, 32, 10, lima2=lima2,
                     conductor_port=conductor.port).create()
    try:
        wait_scan_exists(proxy, "32_ascan")
        pub.prepare_start()
        pub.points(0, 8)
        files.write(frames[:8])  # each receiver has closed its first file: frames 0..3 can be copied
        pub.lima2_progress(8)
        virtual, _ = wait_frames(filename, "32.1/instrument/eiger/frame", frames[:4])
        assert not virtual
        broken = scan_dir / files.receiver_file(1, 1)  # frames 5 and 7: frame 5's LZ4 chunk overwritten
        with h5py.File(broken, "r", locking=False) as f:
            chunk = f[files.data_path].id.get_chunk_info(0)
        with open(broken, "r+b") as fh:
            fh.seek(chunk.byte_offset)
            fh.write(b"\xff" * chunk.size)
        files.write(frames)  # the receivers' third files: frames 4..7 can be copied now
        pub.points(8, 10)
        pub.lima2_progress(10)
        wait_for("the writers' failure in scan_info",
                 lambda: warned(proxy, "32_ascan", "eiger:frame", "points 4..", "could not be read by the writers"),
                 timeout=20)
        pub.stop_close()
        assert wait_scan_done(proxy, "32_ascan") == "OFF", proxy.scan_state_reason("32_ascan")
    finally:
        conductor.stop()
    with h5py.File(filename, "r", locking=False) as f:
        e = f["32.1"]
        np.testing.assert_array_equal(e["instrument/eiger/frame"][()], frames[:4])
        np.testing.assert_array_equal(e["measurement/elapsed_time"][()], np.arange(10) * 0.1)
        assert e["writer/status"][()] == b"SUCCEEDED"


@pytest.fixture(scope="module")
def bliss_writer(stack):
    """A BlissWriter device for MAPPED (plugins installed), in a service of its own."""
    instance = f"w_{MAPPED}"
    name = register_cli(MAPPED, "--class", "BlissWriter", "--instance", instance, "--domain", "id00",
                        "--redis-url", stack.env["REDIS_DATA_URL"])
    stack.start_service(instance, 3, "INFO", extra_env=service_env(plugins=True))
    try:
        yield stack.wait_device(name)
    finally:
        stack.stop_service(instance)


def test_mapped_mosca_file_unreadable_is_a_warning_in_getwarning(bliss_writer, stack, data_dir):
    """The "mapping" route: Mosca spectra copied from Mosca's files; the second file is truncated
    when the writers read it: the warning naming the channel in GetWarning (BLISS logs it and goes
    on), the spectra of the first file written, the other channels complete, the scan OFF."""
    scan_dir = data_dir / "scan0033"
    data = spectra(2, 9, seed=33)
    saving = write_mosca_files(scan_dir, "fx", data, [0, 3], per_file=4, files=2)  # file 0 closed: points 0..3
    filename = str(data_dir / "mapped_mosca_unreadable.h5")
    pub = MappedPluginScan(stack.env["REDIS_DATA_URL"], MAPPED, filename, 33, 9,
                           mosca={0: {"size": SPECTRUM, "saving": saving}}).create()
    client = MappingClient(MAPPED)
    client.prepare(pub.scan.key)
    pub.prepare_start()
    pub.points(0, 9)
    pub.mosca_status(7, 7)
    wait_frames(filename, "33.1/instrument/fx_det0/spectrum", data[0, :4])
    broken = scan_dir / "fx_spectra_0001.h5"
    os.truncate(broken, os.path.getsize(broken) // 2)  # points 4..7: a file not really closed
    write_mosca_files(scan_dir, "fx", data, [0, 3], per_file=4, first_file=2)  # file 1 closed now
    pub.mosca_status(8, 8)
    wait_for("the warning in GetWarning", lambda: any(
        "fx:spectrum:spec_det00" in w and "could not be read by the writers" in w
        for w in warnings_of(bliss_writer, pub.scan.key)), timeout=20)
    client.check()  # BLISS logs the warning and goes on (a FAULT would raise)
    assert any("fx:spectrum:spec_det00" in w for w in client.logged_warnings)
    pub.stop_close()
    client.finalize()
    assert wait_scan_done(bliss_writer, pub.scan.key) == "OFF", bliss_writer.scan_state_reason(pub.scan.key)
    with h5py.File(filename, "r", locking=False) as f:
        e = f["33.1"]
        np.testing.assert_array_equal(e["instrument/fx_det0/spectrum"][()], data[0, :4])
        np.testing.assert_array_equal(e["instrument/fx_det0/trigger_count_rate"][()], 1000.0 + np.arange(9))
        np.testing.assert_array_equal(e["diode"][()], 2.0 * np.arange(9))
        assert e["writer/status"][()] == b"SUCCEEDED"
