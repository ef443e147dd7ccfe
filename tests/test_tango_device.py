"""The NexusWriter device as BLISS 2.4 sees it: real Tango DB, real `mpirun` service (issue 3)."""
from __future__ import annotations

import os
import time

import h5py
import pytest
import tango
from tango import DevState

from launch.simulate import ScanPublisher, ScanSpec
from nxpar.service.register import find_session_writer, from_beacon_yaml, register, to_beacon_yaml
from tests.helpers import assert_disk_checks_refuse, run_scan, start_scan, wait_progress, wait_scan_done, wait_scan_exists


def _reason(excinfo) -> str:
    return excinfo.value.args[0].reason


def test_registration_and_discovery_as_bliss_does_it(services, stack):
    devs = services.get(2, ("bl_sess",))
    name = devs["_names"]["bl_sess"]
    assert name == "id00/bliss_nxwriter/bl_sess"
    db = tango.Database()
    assert name in db.get_device_name("*", "NexusWriter")
    assert find_session_writer("bl_sess") == name
    assert find_session_writer("no_such_session") is None
    # idempotent: registering again finds the existing device
    assert register("bl_sess", instance="other") == name
    # a beacon_host mismatch hides the device from that Beacon, a match keeps it
    db.put_device_property(name, {"beacon_host": "beacon1:25000"})
    assert find_session_writer("bl_sess", beacon_host="beacon2:25000") is None
    assert find_session_writer("bl_sess", beacon_host="beacon1:25000") == name
    db.delete_device_property(name, ["beacon_host"])


def test_beacon_yaml_round_trip():
    text = to_beacon_yaml("NexusWriter", "nexuswriters", {"id00/bliss_nxwriter/test_session": {"session": "test_session"}})
    assert from_beacon_yaml(text) == ("NexusWriter", "nexuswriters",
                                      {"id00/bliss_nxwriter/test_session": {"session": "test_session"}})


def test_bliss_call_sequence_for_a_real_scan(services, stack, data_dir):
    """What BLISS does before a scan: State, makedirs, scan_exists polling, permission and disk checks, scan_state until OFF."""
    proxy = tango.DeviceProxy(find_session_writer("bl_sess") or services.get(2, ("bl_sess",))["_names"]["bl_sess"])
    proxy.set_timeout_millis(3000)
    assert proxy.State() in (DevState.ON, DevState.RUNNING)
    root = data_dir / "visitor" / "id00" / "sample"
    proxy.makedirs(str(root))
    assert root.is_dir()
    spec = ScanSpec("bl_sess", str(root / "sample_0001.h5"), 12, 10, image_shape=(32, 32))
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    t0 = time.monotonic()
    wait_scan_exists(proxy, spec.name)
    assert time.monotonic() - t0 < 10
    # checks made while the scan is still CREATED: evaluated against its filename
    assert proxy.scan_has_write_permissions(spec.name) is True
    assert proxy.scan_disk_space_error(spec.name) == ""
    assert proxy.scan_has_required_disk_space(spec.name) is True
    assert proxy.scan_state(spec.name) in (DevState.INIT, DevState.ON)
    pub.prepare_start()
    for _ in range(5):
        pub.send(2, batch=2)
        assert proxy.scan_state(spec.name) == DevState.ON
        assert proxy.scan_disk_space_warning(spec.name) in ("", "Free disk space below 1024 MB")
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name) == "OFF"
    assert proxy.scan_state_reason(spec.name) == "Finished succesfully"
    assert list(proxy.scan_url(spec.name)) == [f"{spec.filename}::/12.1"]
    with h5py.File(spec.filename, "r", locking=False) as f:
        assert f["12.1/instrument/robx/value"].shape == (10,)
    # attributes
    assert spec.name in proxy.scan_names
    i = list(proxy.scan_names).index(spec.name)
    assert proxy.scan_states[i] == DevState.OFF
    assert any(line.startswith(f"{spec.name}:") and "10pts-10pts" in line for line in proxy.scan_progress)
    assert any(spec.name in line and "OFF Finished succesfully" in line for line in proxy.scan_states_info)
    assert any(spec.filename in line for line in proxy.scan_urls)
    assert all(":" in line for line in proxy.scan_start + proxy.scan_end + proxy.scan_duration + proxy.scan_info)
    assert not any("not finished" in line for line in proxy.scan_end)


def test_unknown_scan_names_raise_clear_devfailed(services):
    proxy = services.get(2)["n2"]
    assert proxy.scan_exists("999_nothing") is False
    for cmd in ("scan_state", "scan_state_reason", "scan_url", "scan_has_write_permissions",
                "scan_disk_space_error", "scan_disk_space_warning", "stop_scan", "kill_scan"):
        with pytest.raises(tango.DevFailed) as excinfo:
            proxy.command_inout(cmd, "999_nothing")
        assert _reason(excinfo) == "NexusWriter_UnknownScan"
        assert "No subscriber for scan '999_nothing' exists" in excinfo.value.args[0].desc
    assert proxy.scan_state("") == DevState.UNKNOWN
    assert proxy.scan_state_reason("") == ""


def test_makedirs_rejects_relative_paths(services):
    proxy = services.get(2)["n2"]
    with pytest.raises(tango.DevFailed) as excinfo:
        proxy.makedirs("relative/dir")
    assert _reason(excinfo) == "NexusWriter_RelativePath"


def test_write_permission_is_really_checked(services, stack, data_dir):
    """The nearest existing parent of the file is a regular file: the writer cannot create it."""
    proxy = services.get(2)["n2"]
    blocker = data_dir / "not_a_dir"
    blocker.write_text("x")
    spec = ScanSpec("n2", str(blocker / "sub" / "data.h5"), 31, 3, image_shape=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    wait_scan_exists(proxy, spec.name)
    assert proxy.scan_has_write_permissions(spec.name) is False
    pub.run()
    assert wait_scan_done(proxy, spec.name) == "FAULT"
    assert "Cannot create directory" in proxy.scan_state_reason(spec.name)
    assert proxy.State() in (DevState.ON, DevState.RUNNING)  # one bad scan never faults the device


def test_malformed_scan_faults_only_that_scan(services, stack, data_dir):
    proxy = services.get(2)["n2"]
    spec = ScanSpec("n2", str(data_dir / "bad.h5"), 32, 3, image_shape=None, extra_info={"title": ""})
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, expect="FAULT")
    assert proxy.scan_state_reason(spec.name) == "scan_info['title'] must be a non-empty string"
    assert not os.path.exists(spec.filename)
    good = ScanSpec("n2", str(data_dir / "good.h5"), 33, 3, image_shape=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], good)
    wait_scan_exists(proxy, good.name)
    pub.run()
    assert wait_scan_done(proxy, good.name) == "OFF"


def test_unsaved_scan_ends_off_without_file(services, stack, data_dir):
    proxy = services.get(2)["n2"]
    spec = ScanSpec("n2", str(data_dir / "nosave.h5"), 34, 3, image_shape=None, save=False)
    run_scan(proxy, stack.env["REDIS_DATA_URL"], spec)
    assert not os.path.exists(spec.filename)


def test_stop_scan_finalises_a_scan_that_never_closes(services, stack, data_dir):
    proxy = services.get(3)["n3"]
    spec = ScanSpec("n3", str(data_dir / "stopped.h5"), 40, 50, image_shape=(16, 16))
    _publisher = start_scan(proxy, stack.env["REDIS_DATA_URL"], spec, 6, batch=3)  # keeps the scan open
    wait_progress(proxy, spec.name, "6pts-6pts")
    proxy.stop_scan(spec.name)
    assert proxy.scan_state(spec.name) == DevState.FAULT
    assert proxy.scan_state_reason(spec.name) == "Stop requested"
    with h5py.File(spec.filename, "r", locking=False) as f:
        assert f["40.1/writer/status"][()] == b"FAILED"
        assert f["40.1/instrument/image/data"].shape == (6, 16, 16)


def test_kill_scan_stops_without_finalisation(services, stack, data_dir):
    proxy = services.get(3)["n3"]
    spec = ScanSpec("n3", str(data_dir / "killed.h5"), 41, 50, image_shape=(16, 16))
    _publisher = start_scan(proxy, stack.env["REDIS_DATA_URL"], spec, 4, batch=2)  # keeps the scan open
    time.sleep(0.5)
    proxy.kill_scan(spec.name)
    assert wait_scan_done(proxy, spec.name, 10) == "FAULT"
    assert "may be incomplete" in proxy.scan_state_reason(spec.name)
    with h5py.File(spec.filename, "r", locking=False) as f:  # readable, and says it is not complete
        assert f["41.1/writer/status"][()] == b"FAILED"
        assert "may be incomplete" in f["41.1/writer/failure"][()].decode()
        assert f["41.1/end_time"][()]  # not finalised, but the end is dated


def test_stop_start_and_purge(services, stack, data_dir):
    proxy = services.get(2, ("ss",))["ss"]
    spec = ScanSpec("ss", str(data_dir / "p.h5"), 1, 3, image_shape=None)
    pub = start_scan(proxy, stack.env["REDIS_DATA_URL"], spec)
    pub.send(1)
    with pytest.raises(tango.DevFailed) as excinfo:  # refused while a scan is running
        proxy.stop()
    assert "Cannot stop session subscriber when scans are running" in excinfo.value.args[0].desc
    pub.send(2)
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name) == "OFF"
    proxy.stop()
    assert proxy.State() == DevState.OFF and proxy.Status() == "Finished succesfully"
    # while OFF, new scans are not discovered
    off_spec = ScanSpec("ss", str(data_dir / "off.h5"), 2, 3, image_shape=None)
    ScanPublisher(stack.env["REDIS_DATA_URL"], off_spec).run()
    time.sleep(1.5)
    assert proxy.scan_exists(off_spec.name) is False
    proxy.start()
    deadline = time.monotonic() + 10
    while proxy.State() != DevState.ON:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(5.2)  # purge_scans removes writers that ended >= 5 s ago
    proxy.purge_scans()
    assert proxy.scan_exists(spec.name) is False


def test_device_fault_heals_by_itself_once_redis_is_usable(stack, tmp_path):
    """Redis not initialised for blissdata → device FAULT with the reason in Status; no Init needed."""
    url = stack.start_redis(init_db=False, name="redis_uninitialised")
    dev = stack.register("fault_sess", "w_fault")
    stack.start_service("w_fault", 2, extra_env={"REDIS_DATA_URL": url})
    try:
        proxy = stack.wait_device(dev, states=("FAULT",))
        assert "No blissdata protocol version found" in proxy.Status()
        from blissdata.redis_engine.store import DataStore

        DataStore(url, init_db=True)
        deadline = time.monotonic() + 15
        while proxy.State() != DevState.ON:
            assert time.monotonic() < deadline, proxy.Status()
            time.sleep(0.1)
        spec = ScanSpec("fault_sess", str(tmp_path / "after.h5"), 1, 4, image_shape=(8, 8))
        run_scan(proxy, url, spec)
    finally:
        stack.stop_service("w_fault")


def test_disk_space_thresholds_are_real(services, stack, data_dir):
    """A threshold above the free space: the check answers before the scan, and the scan FAULTs."""
    proxy = services.get(2, ("disk",))["disk"]
    name = services.get(2, ("disk",))["_names"]["disk"]
    tango.Database().put_device_property(name, {"required_disk_space": "1e12", "recommended_disk_space": "2e12"})
    proxy.init()
    try:
        spec = ScanSpec("disk", str(data_dir / "full.h5"), 1, 3, image_shape=None)
        pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
        wait_scan_exists(proxy, spec.name)
        assert_disk_checks_refuse(proxy, spec.name, 1000000000000, 2000000000000)
    finally:
        tango.Database().delete_device_property(name, ["required_disk_space", "recommended_disk_space"])
    proxy.start()  # the scan writer took its options when it was created: still the huge threshold
    pub.run()
    assert wait_scan_done(proxy, spec.name) == "FAULT"
    assert proxy.scan_state_reason(spec.name) == "Free disk space below 1000000000000 MB"


def test_log_level_and_profiling_attributes(services):
    proxy = services.get(2)["n2"]
    proxy.writer_log_level = 1  # DEBUG
    assert proxy.writer_log_level == 1
    proxy.writer_log_level = 2
    proxy.tango_log_level = 3
    assert proxy.tango_log_level == 3
    proxy.resource_profiling = 1
    assert proxy.resource_profiling == 1
    proxy.resource_profiling = 0


@pytest.mark.parametrize("mode,marker", [(1, "CPU profile (cProfile, top 30"), (7, "memory profile (tracemalloc, top 30")])
def test_resource_profiling_reports_in_the_log(services, stack, data_dir, mode, marker):
    proxy = services.get(2, ("prof",))["prof"]
    log_file = stack.rundir / "service_w_prof.log"
    proxy.resource_profiling = mode
    try:
        spec = ScanSpec("prof", str(data_dir / "prof.h5"), mode, 5, image_shape=(16, 16))
        run_scan(proxy, stack.env["REDIS_DATA_URL"], spec)
        deadline = time.monotonic() + 30  # the report is written when the profiled writer ends; slow under load
        while marker not in log_file.read_text():
            assert time.monotonic() < deadline, log_file.read_text()[-3000:]
            time.sleep(0.1)
        text = log_file.read_text()
        assert "resources:" in text and "fds" in text  # the immediate resource log of the write
        if mode == 1:
            assert "function calls" in text and "scan_driver.py" in text
    finally:
        proxy.resource_profiling = 0
