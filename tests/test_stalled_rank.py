"""A stalled writer rank is seen (issue 21): SIGSTOP of one writer rank during a scan. Past
NXPAR_STALL_WARNING_S the scan's state info, the device Status and the log say so, naming how far each
rank got; past NXPAR_STALL_RESTART_S rank 0 stops the job, its supervisor restarts it, and the scan is
written again from Redis."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from launch.simulate import ScanPublisher, ScanSpec
from tests.crash_campaign import wait_device_back
from tests.helpers import assert_file_matches, wait_scan_done, wait_scan_exists
from tests.processes import service_ranks


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


def warning_of(proxy, name: str) -> str:
    return next((row for row in proxy.scan_info if row.startswith(name) and "WARNING" in row), "")


def test_a_stopped_writer_rank_is_named_and_the_scan_goes_on_once_it_continues(services, stack, data_dir):
    env = {"NXPAR_STALL_WARNING_S": "3", "NXPAR_STALL_RESTART_S": "0"}
    proxy = services.get(3, ("stalled",), extra_env=env)["stalled"]
    spec = ScanSpec("stalled", str(data_dir / "stalled.h5"), 1, 60, image_shape=(64, 64), mca_channels=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    wait_scan_exists(proxy, spec.name)
    rank = service_ranks("w_stalled")[2]
    publisher = threading.Thread(target=pub.run, kwargs={"batch": 1, "rate_hz": 20}, daemon=True)
    publisher.start()
    time.sleep(0.5)
    rank.send_signal(signal.SIGSTOP)
    try:
        row = wait_for(lambda: warning_of(proxy, spec.name), 20, "no stall warning in scan_info")
        assert "writer ranks stalled: no answer for" in row and "rank 1:" in row, row
        assert "writer ranks stalled" in proxy.Status()
        log = (stack.rundir / "service_w_stalled.log").read_text()
        assert "WARN" in log and "writer ranks stalled" in log
    finally:
        rank.send_signal(signal.SIGCONT)
    publisher.join(30)
    assert wait_scan_done(proxy, spec.name, 60) == "OFF", proxy.scan_state_reason(spec.name)
    assert "writer ranks stalled" not in proxy.Status()
    assert_file_matches(pub, 60)


def test_a_rank_stopped_for_good_gets_the_job_restarted_and_the_scan_written_again(stack, data_dir):
    instance, session = "w_stallrestart", "stallrestart"
    devname = stack.register(session, instance)
    stack.start_service(instance, 3, "INFO", supervised=True,
                        extra_env={"NXPAR_STALL_WARNING_S": "2", "NXPAR_STALL_RESTART_S": "6"})
    try:
        proxy = stack.wait_device(devname)
        spec = ScanSpec(session, str(data_dir / "restarted.h5"), 1, 40, image_shape=(64, 64), mca_channels=None)
        pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
        wait_scan_exists(proxy, spec.name)
        pub.prepare_start()
        pub.send(10, batch=2)
        service_ranks(instance)[2].send_signal(signal.SIGSTOP)
        pub.send(30, batch=2)
        pub.stop_close()
        wait_for(lambda: (r := service_ranks(instance).get(2)) is None or r.status() != "stopped",
                 60, "the stalled job was not stopped")
        wait_device_back(devname, 120)
        import tango

        proxy = tango.DeviceProxy(devname)
        wait_scan_exists(proxy, spec.name, 60)
        assert wait_scan_done(proxy, spec.name, 120) == "OFF", proxy.scan_state_reason(spec.name)
        assert_file_matches(pub, 40)
        log = (stack.rundir / f"service_{instance}.log").read_text()
        assert "stopping the MPI job" in log and "writer ranks stalled" in log
    finally:
        for p in service_ranks(instance).values():
            p.send_signal(signal.SIGCONT)
        stack.stop_service(instance)


@pytest.fixture(autouse=True)
def _no_stopped_ranks_left():
    yield
    for ranks in (service_ranks("w_stalled"), service_ranks("w_stallrestart")):
        for p in ranks.values():
            p.send_signal(signal.SIGCONT)
