"""Operating the real service (issue 22 items 5 and 6): device properties checked against their table
(service/properties.py) through the real Tango database and Tango Init; the device Status; the log lines
of real scans (start, progress, end, FAULT) at the default level and at DEBUG.

One service (3 ranks) serves three devices: a NexusWriter registered with bad property values before the
server starts, a NexusWriter with good ones, a BlissWriter.
"""
from __future__ import annotations

import re
import time

import pytest
import tango
from tango import DevState

from launch.simulate import ScanSpec
from tests.helpers import run_scan, start_scan, wait_scan_done, wait_scan_exists
from tests.test_blisswriter import register_cli

INSTANCE = "w_operate"
BAD = {"flush_period": "0,5", "step_mb_per_writer": "0", "keepshape": "maybe"}


@pytest.fixture(scope="module")
def service(stack):
    """The service, started at DEBUG with a progress line every second of a scan."""
    bad = stack.register("op_bad", INSTANCE, **BAD)
    good = stack.register("op_good", INSTANCE)
    bliss = register_cli("op_map", "--class", "BlissWriter", "--instance", INSTANCE, "--domain", "id00",
                         "--redis-url", stack.env["REDIS_DATA_URL"])
    stack.start_service(INSTANCE, 3, "DEBUG", extra_env={"NXPAR_PROGRESS_PERIOD_S": "1"})
    try:
        yield {"bad": stack.wait_device(bad, timeout=120), "good": stack.wait_device(good),
               "bliss": stack.wait_device(bliss), "names": {"bad": bad, "good": good, "bliss": bliss},
               "log": stack.rundir / f"service_{INSTANCE}.log"}
    finally:
        stack.stop_service(INSTANCE)


def log_text(service) -> str:
    return service["log"].read_text()


def wait_log(service, pattern: str, timeout: float = 30) -> re.Match:
    deadline = time.monotonic() + timeout
    while (found := re.search(pattern, log_text(service), re.M)) is None:
        assert time.monotonic() < deadline, f"{pattern!r} not in the log:\n{log_text(service)[-4000:]}"
        time.sleep(0.1)
    return found


def test_a_bad_value_at_start_gives_that_device_the_default_and_a_warning(service, stack, tmp_path):
    """The server did not exit: every device is up; the bad one warns in its Status and in the log, and works
    with the defaults."""
    proxy, name = service["bad"], service["names"]["bad"]
    status = proxy.Status()
    assert proxy.State() == DevState.ON and status.startswith("Subscribed to Redis redis://"), status
    assert ("WARNING: property flush_period = '0,5' is not accepted: a number of seconds from 0.05 to 3600 "
            "expected (default 0.5): the default is used") in status
    assert "property step_mb_per_writer = '0' is not accepted: a number of MB from 0.0625 to 4096" in status
    assert "property keepshape = 'maybe' is not accepted: true or false expected" in status
    log = log_text(service)
    assert re.search(rf"WARN .*{name}: property flush_period = '0,5' is not accepted", log)
    # the defaults in force, said once per device
    assert log.count(f"{name} (session 'op_bad'): steps of 16384 KiB per writer rank") == 1
    assert "flush every 0.5 s" in log
    assert "Subscribed to Redis" in service["good"].Status() and "WARNING" not in service["good"].Status()
    run_scan(proxy, stack.env["REDIS_DATA_URL"], ScanSpec("op_bad", str(tmp_path / "defaults.h5"), 1, 5))


def test_the_tuning_line_is_printed_once_per_device_and_the_start_up_log_names_redis(service, stack):
    log, url = log_text(service), stack.env["REDIS_DATA_URL"]
    for key in ("bad", "good", "bliss"):
        assert len(re.findall(rf"{service['names'][key]} \(session '\w+'\): steps of", log)) == 1, key
    assert f"Tango server nexuswriter/{INSTANCE}, Tango database {stack.env['TANGO_HOST']}, Redis {url}" in log
    assert f"session op_good: Subscribed to Redis {url}" in log
    assert f"{service['names']['bliss']} (session 'op_map'): accepting SaveScan requests, Redis {url}" in log
    assert service["bliss"].Status() == f"Accepting SaveScan requests (Redis {url}): no scan being written"


def test_init_refuses_a_bad_value_naming_the_property_and_its_range_and_keeps_the_old_values(service, stack,
                                                                                             tmp_path):
    proxy, name = service["good"], service["names"]["good"]
    db = tango.Database()
    before = proxy.Status()
    for value in ("abc", "-1", "nan"):
        db.put_device_property(name, {"flush_period": value})
        with pytest.raises(tango.DevFailed) as refused:
            proxy.Init()
        error = refused.value.args[0]
        assert error.reason == "NexusWriter_BadProperty", error
        assert error.desc == (f"Init refused, the device keeps its settings: property flush_period = {value!r} is "
                              "not accepted: a number of seconds from 0.05 to 3600 expected (default 0.5)")
        assert proxy.State() == DevState.ON and proxy.Status() == before  # as it was, not OFF
        wait_log(service, rf"WARN .*{name}: Init refused, the device keeps its settings: property flush_period = "
                          rf"{re.escape(repr(value))} is not accepted")
    bliss = service["names"]["bliss"]
    db.put_device_property(bliss, {"redis_url": "localhost:6379"})
    with pytest.raises(tango.DevFailed) as refused:
        service["bliss"].Init()
    assert refused.value.args[0].reason == "BlissWriter_BadProperty"
    assert "property redis_url = 'localhost:6379' is not accepted: a redis://, rediss:// or unix:// URL" in \
        refused.value.args[0].desc
    db.put_device_property(bliss, {"redis_url": stack.env["REDIS_DATA_URL"]})
    # the old values are still in force: a scan is written as before
    run_scan(proxy, stack.env["REDIS_DATA_URL"], ScanSpec("op_good", str(tmp_path / "kept.h5"), 1, 5))
    # a good value: Init takes it (and re-reads every property)
    db.put_device_property(name, {"flush_period": "2"})
    proxy.Init()
    stack.wait_device(name)  # ON again (the session subscriber restarted)
    wait_log(service, rf"{name} \(session 'op_good'\): steps of .*, flush every 2 s$")


def test_a_scan_says_when_it_starts_how_it_progresses_and_how_it_ended(service, stack, tmp_path):
    """The scan's lines at INFO (start: name, file, ranks; progress; end: state, rows, MB/s, time), its DEBUG
    lines, and the Status while it is written."""
    proxy, url = service["good"], stack.env["REDIS_DATA_URL"]
    spec = ScanSpec("op_good", str(tmp_path / "long.h5"), 7, 60, image_shape=(64, 64))
    pub = start_scan(proxy, url, spec)
    for _ in range(30):  # ~3 s of a scan: progress lines every second
        pub.send(2)
        time.sleep(0.1)
    status = proxy.Status()
    assert re.match(rf"Subscribed to Redis {url}: 1 scan being written \(7_ascan\)", status), status
    with pytest.raises(tango.DevFailed) as refused:  # Init waits for the scans being written
        proxy.Init()
    assert refused.value.args[0].reason == "NexusWriter_ScansRunning" and "Init again once" in \
        refused.value.args[0].desc
    pub.send(0)
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name) == "OFF"
    file = re.escape(spec.filename)
    wait_log(service, rf"INFO .* nxpar.scan: scan 7_ascan: writing {file} \(session op_good, 2 writer ranks\)$")
    wait_log(service, r"INFO .* scan 7_ascan: \d+ rows written, \d+ published, [\d.]+ MB, [\d.]+ MB/s over the last")
    end = wait_log(service, rf"INFO .* scan 7_ascan: OFF in ([\d.]+) s: 60 rows, ([\d.]+) MB at ([\d.]+) MB/s \({file}\)$")
    assert float(end.group(1)) > 2 and float(end.group(2)) > 0 and float(end.group(3)) > 0
    wait_log(service, r"DEBUG .* scan 7_ascan: phases from PREPARED: (STOPPED \+[\d.]+s, )?data written \+[\d.]+s, CLOSED")
    wait_log(service, r"DEBUG .* scan 7_ascan streams: .*cam:image \d+/\d+")
    assert "no scan being written" in proxy.Status()


def test_a_fault_ends_with_one_warning_line_and_its_reason(service, stack, tmp_path):
    proxy = service["bad"]
    spec = ScanSpec("op_bad", str(tmp_path / "bad.h5"), 8, 3, chunk_options={"compression_scheme": "nonsense"})
    pub = start_scan(proxy, stack.env["REDIS_DATA_URL"], spec)
    wait_scan_exists(proxy, spec.name)
    pub.send(3)
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name) == "FAULT"
    line = wait_log(service, r"^.*scan 8_ascan: FAULT after .*$").group(0)
    assert line.startswith("[rank 0] WARN ") and "Unknown HDF5 compression 'nonsense'" in line, line
    assert len(re.findall(r"^\[rank 0\] (?!DEBUG).*scan 8_ascan.*FAULT", log_text(service), re.M)) == 1
