"""Stopping the service (nxpar/service/stop_signals.py) with real processes: SIGINT (Ctrl-C of mpirun)
and SIGTERM stop it cleanly mid-scan (within 10 s, the scan's file FAILED with end_time, no traceback, no
BAD TERMINATION, the run marker clean) and while it starts; NexusWriterBatch too."""
from __future__ import annotations

import signal
import time

import h5py
import pytest

from launch.simulate import ScanPublisher, ScanSpec
from launch.stack import ROOT, VENV
from tests.helpers import start_scan, wait_progress
from tests.processes import service_ranks
from tests.supervision_helpers import (CLEAN_STOP_S, assert_clean_log, assert_failed_with_end_time, marker, wait_gone,
                                       wait_log)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_mpirun_mid_scan_stops_the_service_cleanly(stack, data_dir, signum):
    name = signal.Signals(signum).name
    instance, session = f"w_{name.lower()}", name.lower()
    dev = stack.register(session, instance)
    mpirun = stack.start_service(instance, 3)
    try:
        proxy = stack.wait_device(dev, service=mpirun)
        ranks = service_ranks(instance)
        spec = ScanSpec(session, str(data_dir / f"{name}.h5"), 1, 40, image_shape=(32, 32))
        start_scan(proxy, stack.env["REDIS_DATA_URL"], spec, 5)
        wait_progress(proxy, spec.name, "5pts-5pts")
        t0 = time.monotonic()
        mpirun.send_signal(signum)
        assert mpirun.wait(CLEAN_STOP_S) == 0
        assert time.monotonic() - t0 < CLEAN_STOP_S
        wait_gone([p.pid for p in ranks.values()], 1)
        assert_failed_with_end_time(spec.filename)
        log = (stack.rundir / f"service_{instance}.log").read_text()
        assert_clean_log(log)
        assert f"{name} received: stopping the service" in log
        assert marker(stack, instance)["clean"] is True
    finally:
        stack.stop_service(instance)


def wait_signals_blocked(instance: str, signum: int, timeout: float = 60) -> None:
    """Until the 3 ranks run and each blocks `signum` (what nxpar.service.stop_signals does first thing in
    main(); before it, while Python itself starts, the default action is all there is)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ranks = service_ranks(instance)
        try:
            blocked = [int(next(line.split()[1] for line in open(f"/proc/{p.pid}/status") if line.startswith("SigBlk")),
                           16) >> (signum - 1) & 1 for p in ranks.values()]
        except (OSError, StopIteration):
            blocked = []
        if len(blocked) == 3 and all(blocked):
            return
        time.sleep(0.01)
    raise TimeoutError(f"the ranks of {instance} never blocked signal {signum}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_service_starts_stops_it_cleanly(stack, signum):
    instance = f"w_early_{signal.Signals(signum).name.lower()}"
    stack.register(f"early_{signal.Signals(signum).name.lower()}", instance)
    for delay in (0.0, 1.0, 2.5):  # from the moment every rank blocks the signals: while MPI, then Tango start
        mpirun = stack.start_service(instance, 3)
        wait_signals_blocked(instance, signum)
        time.sleep(delay)
        mpirun.send_signal(signum)
        try:
            assert mpirun.wait(CLEAN_STOP_S + 10) == 0, delay
        finally:
            stack.stop_service(instance)
        assert_clean_log((stack.rundir / f"service_{instance}.log").read_text())


def test_the_batch_stops_cleanly_on_ctrl_c_while_it_starts_and_mid_scan(stack, data_dir):
    url = stack.env["REDIS_DATA_URL"]
    cmd = ["mpirun", "-n", "3", str(VENV / "bin" / "NexusWriterBatch"), url, "--session", "batchsig"]
    env = {"PYTHONPATH": str(ROOT), "NXPAR_STATE_DIR": str(stack.rundir / "state")}
    early = stack._spawn("batch_sigint", cmd, env=env)
    time.sleep(1.0)
    early.send_signal(signal.SIGINT)
    assert early.wait(CLEAN_STOP_S + 10) == 0
    assert_clean_log((stack.rundir / "batch_sigint.log").read_text())
    batch = stack._spawn("batch_sigint", cmd, env=env)
    try:
        wait_log(stack.rundir / "batch_sigint.log", "rank 0 of 3: writing", 2)  # the batch takes new scans
        pub = ScanPublisher(url, ScanSpec("batchsig", str(data_dir / "batch.h5"), 1, 20, image_shape=(16, 16)))
        pub.prepare_start()
        pub.send(5)
        time.sleep(1)
        batch.send_signal(signal.SIGINT)  # no new scans; the running one is written to its end
        pub.send(15)
        pub.stop_close()
        assert batch.wait(30) == 0
        with h5py.File(pub.spec.filename, "r", locking=False) as f:
            assert f["1.1/writer/status"][()] == b"SUCCEEDED" and f["1.1/end_time"][()]
        assert_clean_log((stack.rundir / "batch_sigint.log").read_text())
    finally:
        stack.stop("batch_sigint")

