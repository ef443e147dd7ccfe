"""Supervision and stopping (nxpar/service/supervision.py, run_marker.py, stop_signals.py), against real
processes: a real supervisord runs the service and restarts it after kill -9 of a rank, the devices' Status
says why, `supervisorctl stop` stops it cleanly and a job that cannot stop is killed whole; the systemd unit
passes `systemd-analyze verify` and its command line and environment, run by hand as systemd runs them
(no systemd as PID 1 here), start, restart and stop the service. SIGINT and SIGTERM: tests/test_stopping.py.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path


from launch.processes import NAME_MARK, RUNDIR_MARK, kill_marked, marked
from launch.simulate import ScanPublisher, ScanSpec
from launch.stack import ROOT
from nxpar.service import supervision
from nxpar.service.run_marker import RESTART_REASON_ENV, RunMarker, marker_path
from tests.helpers import start_scan, wait_progress, wait_scan_exists
from tests.processes import service_ranks
from tests.supervision_helpers import CLEAN_STOP_S, assert_failed_with_end_time, marker, wait_gone

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # what systemd gives a service


def render(kind: str, *args: str) -> str:
    argv = [kind, *args]
    return supervision.rendering(supervision.build_parser().parse_args(argv), argv).text()


# -- the run marker ------------------------------------------------------------------------------------
def test_the_run_marker_tells_the_next_run_how_the_previous_one_ended(tmp_path, monkeypatch):
    monkeypatch.setenv("TANGO_HOST", "tango.example:20000")
    monkeypatch.setenv(RESTART_REASON_ENV, "")  # recorded, so that the end of the test takes it away again
    monkeypatch.delenv(RESTART_REASON_ENV)  # (RunMarker.start sets it in os.environ itself)
    assert RunMarker("w", tmp_path).start() == ""  # the first run ever
    assert json.loads(marker_path("w", tmp_path).read_text())["clean"] is False
    crashed = RunMarker("w", tmp_path)
    reason = crashed.start()  # the previous run never said it ended cleanly
    assert reason.startswith("restarted at ") and f"pid {os.getpid()}" in reason
    assert "ended without a clean shutdown" in reason and os.environ[RESTART_REASON_ENV] == reason
    crashed.record_stop_reason("the writer ranks stalled for 300 s")  # rank 0 about to MPI_Abort
    monkeypatch.setenv(RESTART_REASON_ENV, "restarted on node b")  # a launcher's own reason is kept, first
    after_abort = RunMarker("w", tmp_path)
    assert "it stopped itself: the writer ranks stalled for 300 s" in after_abort.start()
    assert os.environ[RESTART_REASON_ENV].startswith("restarted on node b; restarted at ")
    after_abort.stopped_cleanly()
    assert RunMarker("w", tmp_path).start() == ""
    assert marker_path("w", tmp_path).name == "w@tango.example%3A20000.run.json"  # as the journal's directory


def test_the_run_marker_never_stops_the_service(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TANGO_HOST", "h:1")
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    run = RunMarker("w", blocked)  # the state directory cannot be made
    assert run.start() == ""
    run.stopped_cleanly()
    assert "cannot be written" in caplog.text


# -- the texts nxpar-supervision prints --------------------------------------------------------------------
def test_the_supervisord_section_says_what_supervisord_reads(tmp_path):
    from supervisor.datatypes import RestartUnconditionally
    from supervisor.options import ServerOptions

    section = render("supervisord", "w_demo", "--ranks", "4", "--tango-host", "tango:20000", "--redis-url",
                     "redis://r:6379", "--state-dir", str(tmp_path), "--log-dir", str(tmp_path),
                     "--env", "HDF5_USE_FILE_LOCKING=FALSE")
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[supervisord]\nlogfile={tmp_path / 'supervisord.log'}\n\n{section}")
    options = ServerOptions()
    options.realize(args=["--configuration", str(conf)])
    program = options.process_group_configs[0].process_configs[0]
    argv = shlex.split(program.command)
    assert program.name == "nxpar-w_demo" and Path(argv[0]).name in ("mpirun", "mpiexec")
    assert argv[1:] == ["-n", "4", argv[3], "w_demo", "--log=INFO"]
    assert Path(argv[3]).name == "NexusWriterService" and Path(argv[3]).exists() and Path(argv[0]).exists()
    shim = supervision.loopback_shim()  # built by launch/setup.sh: hydra's control port on loopback
    assert shim is not None
    assert program.environment == {"TANGO_HOST": "tango:20000", "NXPAR_STATE_DIR": str(tmp_path),
                                   "REDIS_DATA_URL": "redis://r:6379", "HDF5_USE_FILE_LOCKING": "FALSE",
                                   "UCX_NET_DEVICES": "lo", "LD_PRELOAD": str(shim)}
    assert program.stopsignal == signal.SIGTERM and program.stopwaitsecs > CLEAN_STOP_S
    assert program.stopasgroup and program.killasgroup and program.autorestart is RestartUnconditionally
    assert program.startretries > 10 and program.directory == str(tmp_path)


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "nxpar-w_demo.service"
    unit.write_text(render("systemd", "w_demo", "--ranks", "4", "--tango-host", "tango:20000",
                           "--beacon-host", "beacon:25000", "--state-dir", str(tmp_path), "--env", "X=a b%c$d"))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr
    launch = systemd_launch(unit.read_text())
    assert launch["env"]["X"] == "a b%c$d" and launch["env"]["BEACON_HOST"] == "beacon:25000"
    assert launch["KillMode"] == "mixed" and launch["Restart"] == "always"
    assert int(launch["TimeoutStopSec"]) > CLEAN_STOP_S
    assert launch["argv"][1:3] == ["-n", "4"] and launch["argv"][-2:] == ["w_demo", "--log=INFO"]


def test_a_multi_node_job_uses_the_interface_the_operator_names(monkeypatch):
    assert supervision.mpi_network("", {}) == ([], {"UCX_NET_DEVICES": "lo", "LD_PRELOAD": str(supervision.loopback_shim())})
    assert supervision.mpi_network("", {"NXPAR_MPI_IFACE": "eth1"}) == (["-iface", "eth1"], {"UCX_NET_DEVICES": "eth1"})
    # an InfiniBand port for UCX, hydra on the IP interface of the same network
    assert supervision.mpi_network("ib0", {"UCX_NET_DEVICES": "mlx5_0:1"}) == (["-iface", "ib0"],
                                                                             {"UCX_NET_DEVICES": "mlx5_0:1"})
    unit = render("systemd", "w", "--ranks", "8", "--tango-host", "t:1", "--iface", "eth1", "--hosts", "a:4,b:4")
    launch = systemd_launch(unit)
    assert launch["argv"][1:7] == ["-iface", "eth1", "-hosts", "a:4,b:4", "-n", "8"]
    assert launch["env"]["UCX_NET_DEVICES"] == "eth1"


def systemd_launch(unit: str) -> dict:
    """What systemd runs for the unit: ExecStart's argv, the Environment= lines, the other settings."""
    settings: dict = {"env": {}}
    for line in unit.splitlines():
        key, sep, value = line.partition("=")
        if not sep or line.startswith(("#", "[")):
            continue
        if key == "Environment":
            name, _, val = shlex.split(value.replace("%%", "%"))[0].partition("=")
            settings["env"][name] = val
        elif key == "ExecStart":
            settings["argv"] = shlex.split(value.replace("$$", "$").replace("%%", "%"))
        else:
            settings[key] = value
    return settings


# -- supervisord, for real ------------------------------------------------------------------------------------
def test_supervisord_restarts_a_killed_job_the_status_says_why_and_stop_is_clean(stack, data_dir):
    instance, session = "w_supd", "supd"
    dev = stack.register(session, instance)
    stack.start_service(instance, 3, supervised=True)
    try:
        proxy = stack.wait_device(dev)
        first = service_ranks(instance)
        assert sorted(first) == [0, 1, 2]
        assert marker(stack, instance)["pid"] == first[0].pid and marker(stack, instance)["clean"] is False
        first[2].send_signal(signal.SIGKILL)  # one writer rank: mpirun ends the whole job
        wait_gone([p.pid for p in first.values()], 30)
        proxy = stack.wait_device(dev, timeout=90)  # supervisord started it again
        status = proxy.Status()
        assert "restarted at" in status and f"pid {first[0].pid}" in status, status
        assert "ended without a clean shutdown" in status, status
        second = service_ranks(instance)
        spec = ScanSpec(session, str(data_dir / "stopped.h5"), 1, 40, image_shape=(32, 32))
        start_scan(proxy, stack.env["REDIS_DATA_URL"], spec, 5)
        wait_progress(proxy, spec.name, "5pts-5pts")
        t0 = time.monotonic()
        out = stack.supervisorctl(instance, "stop", f"nxpar-{instance}")
        assert "stopped" in out.stdout and time.monotonic() - t0 < CLEAN_STOP_S, out
        wait_gone([p.pid for p in second.values()], 1)
        assert marked(stack.rundir, f"service_{instance}") == [int((stack.rundir / f"service_{instance}.pid").read_text())]
        assert marker(stack, instance)["clean"] is True and marker(stack, instance)["pid"] == second[0].pid
        assert_failed_with_end_time(spec.filename)
        assert "SIGTERM received" in (stack.rundir / f"service_{instance}.log").read_text()
    finally:
        stack.stop_service(instance)


def test_a_job_stopped_by_its_own_watchdog_says_why_once_restarted(stack, data_dir):
    instance, session = "w_selfstop", "selfstop"
    dev = stack.register(session, instance)
    stack.start_service(instance, 3, supervised=True,
                        extra_env={"NXPAR_STALL_WARNING_S": "1", "NXPAR_STALL_RESTART_S": "3"})
    ranks = {}
    try:
        proxy = stack.wait_device(dev)
        ranks = service_ranks(instance)
        ranks[2].send_signal(signal.SIGSTOP)  # its share of the first rows never comes: rank 0 stops the job
        pub = ScanPublisher(stack.env["REDIS_DATA_URL"], ScanSpec(session, str(data_dir / "self.h5"), 1, 5,
                                                                  image_shape=(16, 16)))
        wait_scan_exists(proxy, pub.spec.name)
        pub.prepare_start()
        pub.send(5)
        wait_gone([p.pid for p in ranks.values()], 60)
        status = stack.wait_device(dev, timeout=90).Status()
        assert f"pid {ranks[0].pid}" in status and "it stopped itself: writer ranks stalled" in status, status
        pub.stop_close()
    finally:
        for p in ranks.values():
            if p.is_running():
                p.send_signal(signal.SIGCONT)
        stack.stop_service(instance)


def test_supervisord_kills_every_rank_of_a_job_that_does_not_stop(stack):
    instance = "w_stuck"
    dev = stack.register("stuck", instance)
    stack.start_service(instance, 3, supervised=True, stop_timeout=3)
    ranks = {}
    try:
        stack.wait_device(dev)
        ranks = service_ranks(instance)
        ranks[0].send_signal(signal.SIGSTOP)  # rank 0 cannot act on SIGTERM
        t0 = time.monotonic()
        stack.supervisorctl(instance, "stop", f"nxpar-{instance}")
        wait_gone([p.pid for p in ranks.values()], CLEAN_STOP_S)
        assert time.monotonic() - t0 < 3 + CLEAN_STOP_S
        assert marker(stack, instance)["clean"] is False  # the next run will say so
    finally:
        for p in ranks.values():
            if p.is_running():
                p.send_signal(signal.SIGCONT)
        stack.stop_service(instance)


# -- the systemd unit, run by hand as systemd runs it -------------------------------------------------------------
def test_the_systemd_unit_starts_restarts_and_stops_the_service(stack, data_dir):
    instance, name = "w_unit", "unit_w_unit"
    dev = stack.register("unit", instance)
    unit = render("systemd", instance, "--ranks", "3", "--tango-host", stack.env["TANGO_HOST"], "--redis-url",
                  stack.env["REDIS_DATA_URL"], "--state-dir", str(stack.rundir / "state"),
                  "--env", f"PYTHONPATH={ROOT}", "--env", f"ORBendPoint={stack.env['ORBendPoint']}")
    launch = systemd_launch(unit)
    assert launch["KillMode"] == "mixed" and Path(launch["argv"][0]).is_absolute()
    Path(launch["WorkingDirectory"]).mkdir(parents=True, exist_ok=True)
    # systemd's environment: PATH and the unit's own (the two marks stand for the unit's cgroup)
    env = {"PATH": SYSTEMD_PATH, **launch["env"], RUNDIR_MARK: str(stack.rundir), NAME_MARK: name}
    log = open(stack.rundir / f"{name}.log", "ab")

    def start() -> subprocess.Popen:
        return subprocess.Popen(launch["argv"], env=env, cwd=launch["WorkingDirectory"], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    try:
        main = start()
        stack.wait_device(dev, service=main)
        killed = service_ranks(instance)
        killed[1].send_signal(signal.SIGKILL)
        assert main.wait(30) != 0  # Restart=always: systemd starts it again after RestartSec
        time.sleep(float(launch["RestartSec"]))
        main = start()
        proxy = stack.wait_device(dev, service=main, timeout=90)
        assert f"pid {killed[0].pid}" in proxy.Status() and "without a clean shutdown" in proxy.Status()
        t0 = time.monotonic()
        main.send_signal(signal.SIGTERM)  # KillMode=mixed: SIGTERM to the main process only
        assert main.wait(float(launch["TimeoutStopSec"])) == 0
        assert time.monotonic() - t0 < CLEAN_STOP_S
        wait_gone(marked(stack.rundir, name), 2)  # nothing left for systemd's final SIGKILL
        assert marker(stack, instance)["clean"] is True
    finally:
        kill_marked(stack.rundir, name)
