"""The BlissWriter device (BLISS's "mapping" route, issue 16): real Tango DB, real `mpirun` service
serving NexusWriter and BlissWriter side by side, scans whose h5maps come from blissdata's models."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tango
from blissdata import h5map as h5m
from tango import DevState

from launch.simulate import ScanPublisher, ScanSpec
from nxpar.service.register import find_session_writer, from_beacon_yaml, to_beacon_yaml
from tests.helpers import ROOT, wait_scan_done
from tests.mapping_client import MappingClient
from tests.test_h5maps import scan_map

SESSION = "mapsess"
INSTANCE = "w_mapping"


def register_cli(*args: str) -> str:
    """RegisterNexusWriter as an operator runs it; returns the device name it prints."""
    out = subprocess.run([sys.executable, "-m", "nxpar.service.register", *args], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def devices(stack):
    """One service, two classes: NexusWriter and BlissWriter for the same session."""
    nexus = stack.register(SESSION, INSTANCE)
    bliss = register_cli(SESSION, "--class", "BlissWriter", "--instance", INSTANCE, "--domain", "id00",
                         "--redis-url", stack.env["REDIS_DATA_URL"])
    # a third device of the same server, on a Redis not initialised for blissdata
    bare_url = stack.start_redis(init_db=False, name="redis_bare_blisswriter")
    faulty = register_cli("bw_fault", "--class", "BlissWriter", "--instance", INSTANCE, "--domain", "id00",
                          "--redis-url", bare_url)
    stack.start_service(INSTANCE, 3, "INFO")
    try:
        yield {"nexus": stack.wait_device(nexus), "bliss": stack.wait_device(bliss), "names": (nexus, bliss),
               "faulty": stack.wait_device(faulty, states=("FAULT",)), "bare_url": bare_url}
    finally:
        stack.stop_service(INSTANCE)


def mapped_scan(stack, data_dir, nb: int, npoints: int, h5maps: bool = True, **info) -> ScanPublisher:
    """A scan BLISS publishes for the "mapping" route: its file tree as blissdata h5map models."""
    filename, raw_file = str(data_dir / f"mapped_{nb}.h5"), str(data_dir / f"raw_{nb}.bin")
    np.arange(12, dtype="<u2").tofile(raw_file)
    extra = {"h5maps": _with_lima2_link(scan_map(filename, raw_file, npoints), filename)} if h5maps else {}
    # entry "1.1" is the map's; the scan number keeps scan names apart for the session's NexusWriter
    spec = ScanSpec(SESSION, filename, nb, npoints, image_shape=(16, 12), mca_channels=None, data_writer="mapping",
                    extra_info={**extra, **info})
    return ScanPublisher(stack.env["REDIS_DATA_URL"], spec)


def _with_lima2_link(maps: dict, filename: str) -> dict:
    """Lima2 frames are mapped as an external link to the detector's own file."""
    link = h5m.ExternalLink(target_file="lima2_frames.h5", target_path="/entry_0000/data").model_dump()
    maps[filename]["children"]["1.1"]["children"]["lima2_frames"] = link
    return maps


def test_registration_by_class_and_beacon_yaml(devices, tmp_path):
    nexus, bliss = devices["names"]
    assert bliss == f"id00/blisswriter/{SESSION}" and nexus == f"id00/bliss_nxwriter/{SESSION}"
    db = tango.Database()
    assert bliss in db.get_device_name("*", "BlissWriter")
    assert db.get_device_info(bliss).ds_full_name == db.get_device_info(nexus).ds_full_name  # one server
    assert find_session_writer(SESSION, writer_class="BlissWriter") == bliss
    assert find_session_writer(SESSION) == nexus  # the "nexus" route still finds its own device
    # export both classes, import them under another session
    yml = tmp_path / "writers.yml"
    assert register_cli(SESSION, "--class", "BlissWriter", "--instance", INSTANCE, "--domain", "id00",
                        "--export-yaml", str(yml)) == bliss
    text = yml.read_text()
    assert "class: BlissWriter" in text and "class: NexusWriter" in text and "redis_url" in text
    yml.write_text(text.replace(SESSION, "yaml_sess").replace(INSTANCE, "w_yaml"))
    subprocess.run([sys.executable, "-m", "nxpar.service.register", "--import-yaml", str(yml)], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    imported = find_session_writer("yaml_sess", writer_class="BlissWriter")
    assert imported == "id00/blisswriter/yaml_sess"
    assert db.get_device_info(imported).ds_full_name.lower() == "nexuswriter/w_yaml"
    assert list(db.get_device_property(imported, "redis_url")["redis_url"]) == [os.environ["REDIS_DATA_URL"]]
    assert find_session_writer("yaml_sess") == "id00/bliss_nxwriter/yaml_sess"


def test_beacon_yaml_keeps_each_class():
    devs = {"id00/bliss_nxwriter/s": {"session": "s"}, "id00/blisswriter/s": {"session": "s", "redis_url": "r"}}
    text = to_beacon_yaml("NexusWriter", "w", devs, {"id00/blisswriter/s": "BlissWriter"})
    assert from_beacon_yaml(text) == ("NexusWriter", "w", {"id00/bliss_nxwriter/s": {"session": "s"}})
    assert from_beacon_yaml(text, "BlissWriter") == ("NexusWriter", "w", {"id00/blisswriter/s": devs["id00/blisswriter/s"]})


def test_bliss_mapping_client_writes_the_published_h5map(devices, stack, data_dir):
    """BLISS's call sequence: ON, SaveScan, registered, scan ON (each < 10 s), checks every 3 s, no wait."""
    pub = mapped_scan(stack, data_dir, 1, 6)
    client = MappingClient(SESSION)
    client.prepare(pub.scan.key)
    assert all(t < 10 for t in client.timings.values()), client.timings
    pub.prepare_start()
    for _ in range(3):
        pub.send(2, batch=2)
        client.check()
        assert client.proxy.scan_state(pub.scan.key) == DevState.ON
    assert client.proxy.State() == DevState.RUNNING  # accepting, a scan being written
    pub.stop_close(final_info={"h5maps": _with_lima2_link(scan_map(pub.spec.filename, str(data_dir / "raw_1.bin"),
                                                                     6, final=True), pub.spec.filename)})
    client.finalize()
    proxy = devices["bliss"]
    assert wait_scan_done(proxy, pub.scan.key) == "OFF", proxy.scan_state_reason(pub.scan.key)
    assert proxy.scan_state_reason(pub.scan.key) == "Finished succesfully"
    assert proxy.GetWarningCount(pub.scan.key) == 0 and client.logged_warnings == []
    with h5py.File(pub.spec.filename, "r", locking=False) as f:
        e = f["1.1"]
        np.testing.assert_array_equal(e["instrument/cam/data"][()], pub.expected("cam:image", 6))
        np.testing.assert_array_equal(e["measurement/diode"][()], pub.expected("diode_ctrl:diode", 6))
        np.testing.assert_array_equal(e["diode_twice"][()], np.tile(pub.expected("diode_ctrl:diode", 6), 2))
        assert e.get("lima2_frames", getlink=True).filename == "lima2_frames.h5"
        assert e.get("lima2_frames", getlink=True).path == "/entry_0000/data"
        assert e["end_reason"][()] == b"SUCCESS" and e["writer/status"][()] == b"SUCCEEDED"
        assert list(f) == ["1.1"]
    # the NexusWriter of the same session saw the scan and left it to BlissWriter
    nexus = devices["nexus"]
    assert wait_scan_done(nexus, pub.spec.name) == "OFF" and list(nexus.scan_url(pub.spec.name)) == []


def test_bad_input_gives_clear_devfailed(devices):
    proxy = devices["bliss"]
    assert proxy.scan_state("esrf:scan:nothing") == DevState.UNKNOWN  # BLISS polls this until it changes
    for cmd in ("scan_state_reason", "GetWarningCount"):
        with pytest.raises(tango.DevFailed) as excinfo:
            proxy.command_inout(cmd, "esrf:scan:nothing")
        assert excinfo.value.args[0].reason == "BlissWriter_UnknownScan"
        assert "esrf:scan:nothing" in excinfo.value.args[0].desc
    with pytest.raises(tango.DevFailed) as excinfo:
        proxy.SaveScan("esrf:scan:nothing")
    assert excinfo.value.args[0].reason == "BlissWriter_UnknownScan"
    assert "Cannot load scan 'esrf:scan:nothing' from Redis" in excinfo.value.args[0].desc
    for arg in ("not json", '{"scan_key": "k"}', '{"scan_key": "k", "index": "0"}', "[]"):
        with pytest.raises(tango.DevFailed) as excinfo:
            proxy.GetWarning(arg)
        assert excinfo.value.args[0].reason == "BlissWriter_BadArgument", arg
        assert '{"scan_key": "<key>", "index": <int>}' in excinfo.value.args[0].desc
    with pytest.raises(tango.DevFailed) as excinfo:
        proxy.GetWarning(json.dumps({"scan_key": "esrf:scan:nothing", "index": 0}))
    assert excinfo.value.args[0].reason == "BlissWriter_UnknownScan"
    assert proxy.State() in (DevState.ON, DevState.RUNNING)


def test_scan_without_h5map_faults_with_its_reason(devices, stack, data_dir):
    pub = mapped_scan(stack, data_dir, 2, 3, h5maps=False)
    client = MappingClient(SESSION)
    client.prepare(pub.scan.key)  # ON while waiting for PREPARED: the h5map comes with it
    pub.prepare_start()
    proxy = devices["bliss"]
    assert wait_scan_done(proxy, pub.scan.key) == "FAULT"
    assert "scan_info has no 'h5maps'" in proxy.scan_state_reason(pub.scan.key)
    with pytest.raises(RuntimeError, match="Scan writer state is FAULT: scan_info has no 'h5maps'"):
        client.check()  # BLISS fails the scan
    pub.send(3)
    pub.stop_close()
    assert not os.path.exists(pub.spec.filename)
    assert proxy.State() in (DevState.ON, DevState.RUNNING)  # one bad scan never faults the device


def test_warnings_are_listed_per_scan(devices, stack, data_dir):
    """Free space below recommended_disk_space: a warning of that scan, read as BLISS does."""
    proxy = devices["bliss"]
    name = devices["names"][1]
    tango.Database().put_device_property(name, {"recommended_disk_space": "1e12"})
    proxy.init()
    try:
        pub = mapped_scan(stack, data_dir, 3, 4)
        client = MappingClient(SESSION)
        client.prepare(pub.scan.key)
        pub.prepare_start()
        pub.send(2)
        deadline = time.monotonic() + 10
        while not client.logged_warnings:
            assert time.monotonic() < deadline, "no warning"
            client.check()
            time.sleep(0.2)
        assert client.logged_warnings == ["Free disk space below 1000000000000 MB"]
        with pytest.raises(tango.DevFailed) as excinfo:
            proxy.GetWarning(json.dumps({"scan_key": pub.scan.key, "index": 1}))
        assert "has 1 warning(s), no index 1" in excinfo.value.args[0].desc
        pub.send(2)
        pub.stop_close()
        assert wait_scan_done(proxy, pub.scan.key) == "OFF"
        assert proxy.GetWarningCount(pub.scan.key) == 1  # kept once the scan is written
    finally:
        tango.Database().delete_device_property(name, ["recommended_disk_space"])
        proxy.init()


def test_stop_refuses_and_start_accepts(devices, stack, data_dir):
    proxy = devices["bliss"]
    pub = mapped_scan(stack, data_dir, 4, 2)
    proxy.Stop()
    try:
        assert proxy.State() == DevState.OFF and "Not accepting" in proxy.Status()
        assert proxy.SaveScan(pub.scan.key) is False
        assert proxy.scan_state(pub.scan.key) == DevState.UNKNOWN
        with pytest.raises(RuntimeError, match="Nexus writer service is in OFF state"):
            MappingClient(SESSION).prepare(pub.scan.key)
    finally:
        proxy.Start()
    assert proxy.State() == DevState.ON
    assert proxy.SaveScan(pub.scan.key) is True and proxy.SaveScan(pub.scan.key) is True  # idempotent
    pub.run()
    assert wait_scan_done(proxy, pub.scan.key) == "OFF", proxy.scan_state_reason(pub.scan.key)


def test_device_fault_when_redis_is_unusable_heals_by_itself(devices, stack, data_dir):
    proxy = devices["faulty"]
    assert proxy.State() == DevState.FAULT
    assert "Cannot use Redis" in proxy.Status() and "No blissdata protocol version found" in proxy.Status()
    with pytest.raises(tango.DevFailed) as excinfo:
        proxy.SaveScan("esrf:scan:any")
    assert excinfo.value.args[0].reason == "BlissWriter_Fault" and "tries again by itself" in excinfo.value.args[0].desc
    assert devices["bliss"].State() in (DevState.ON, DevState.RUNNING)  # the other devices go on
    from blissdata.redis_engine.store import DataStore

    DataStore(devices["bare_url"], init_db=True)
    deadline = time.monotonic() + 15  # no Init: the device tries again every 2 s
    while proxy.State() != DevState.ON and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proxy.State() == DevState.ON, proxy.Status()
    spec = ScanSpec("bw_fault", str(data_dir / "after_init.h5"), 1, 3, image_shape=None, data_writer="mapping",
                    extra_info={"h5maps": {str(data_dir / "after_init.h5"): {"type": "group", "children": {
                        "1.1": {"type": "group", "children": {"x": {"type": "dataset", "value": {
                            "type": "stream", "stream": "axis:robx"}}}}}}}})
    pub = ScanPublisher(devices["bare_url"], spec)
    assert proxy.SaveScan(pub.scan.key) is True
    pub.run()
    assert wait_scan_done(proxy, pub.scan.key) == "OFF", proxy.scan_state_reason(pub.scan.key)
    with h5py.File(spec.filename, "r", locking=False) as f:
        np.testing.assert_array_equal(f["1.1/x"][()], pub.expected("axis:robx", 3))


def lima_map(filename: str) -> dict:
    """BLISS maps a Lima channel as a stream dataset like any other (blisswriter 3.0.0 makes it a VDS)."""
    entry = h5m.Group(attributes={"NX_class": "NXentry"}, children={
        "instrument": h5m.Group(attributes={"NX_class": "NXinstrument"}, children={
            "lima_simulator": h5m.Group(attributes={"NX_class": "NXdetector"}, children={
                "image": h5m.Dataset(value=h5m.Stream(stream="lima_simulator:image"),
                                     attributes={"interpretation": "image"})}),
            "diode": h5m.Group(attributes={"NX_class": "NXdetector"}, children={
                "data": h5m.Dataset(value=h5m.Stream(stream="diode_ctrl:diode"))})}),
        "measurement": h5m.Group(attributes={"NX_class": "NXcollection"}, children={
            "lima_simulator": h5m.SoftLink(target_path="/7.1/instrument/lima_simulator/image")})})
    root = h5m.Group(children={"7.1": entry})
    return {filename: json.loads(json.dumps(root.model_dump(), default=lambda a: a.tolist()))}


def test_lima_stream_of_the_h5map_becomes_a_virtual_dataset(devices, stack, data_dir):
    from blissdata.redis_engine.store import DataStore

    from launch.simulate import realistic_frames
    from tests.test_references import lima_scan, run_lima

    frames = realistic_frames(5, (32, 24))
    lima_dir = data_dir / "scan0007"
    lima_dir.mkdir()
    for number, (lo, hi) in enumerate([(0, 3), (3, 5)]):  # 3 frames per file
        with h5py.File(lima_dir / f"lima_simulator_{number:04d}.h5", "w") as f:
            d = f.create_dataset("entry_0000/ESRF-id00/lima_simulator/data", shape=(3, 32, 24), dtype="uint16")
            d[: hi - lo] = frames[lo:hi]
    saving = {"file_offset": 0, "frames_per_file": 3, "file_format": "hdf5",
              "file_path": str(lima_dir / "lima_simulator_%04d.h5"), "data_path": "/entry_0000/ESRF-id00/lima_simulator/data"}
    filename = str(data_dir / "lima_mapped.h5")
    scan, info, scalars, lima = lima_scan(DataStore(stack.env["REDIS_DATA_URL"]), SESSION, filename, 7, saving,
                                          extra_info={"data_writer": "mapping", "h5maps": lima_map(filename)})
    client = MappingClient(SESSION)
    client.prepare(scan.key)
    run_lima(scan, info, scalars, lima)
    client.finalize()
    proxy = devices["bliss"]
    assert wait_scan_done(proxy, scan.key) == "OFF", proxy.scan_state_reason(scan.key)
    with h5py.File(filename, "r", locking=False) as f:
        d = f["7.1/instrument/lima_simulator/image"]
        assert d.is_virtual and d.shape == (5, 32, 24) and d.dtype == np.uint16
        assert [s.file_name for s in d.virtual_sources()] == ["scan0007/lima_simulator_0000.h5",
                                                              "scan0007/lima_simulator_0001.h5"]
        np.testing.assert_array_equal(d[()], frames)
        assert d.attrs["interpretation"] == "image"
        np.testing.assert_array_equal(f["7.1/measurement/lima_simulator"][()], frames)
        np.testing.assert_array_equal(f["7.1/instrument/diode/data"][()], np.arange(5, dtype=float))
