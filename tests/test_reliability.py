"""Faults against the real stack (issue 6): dead rank, Redis loss, full disk, bad input, soak."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import psutil
import pytest
import tango
from tango import DevState

from nxpar.simulate import ScanPublisher, ScanSpec
from tests.conftest import wait_scan_done, wait_scan_exists


def service_ranks(instance: str) -> dict[int, psutil.Process]:
    """The NexusWriterService processes of one instance, by MPI rank."""
    ranks = {}
    for p in psutil.process_iter(["cmdline", "environ"]):
        cmd = p.info["cmdline"] or []
        if len(cmd) > 2 and cmd[-2:-1] == [instance] or instance in cmd[1:3]:
            if any("NexusWriterService" in c for c in cmd) and "mpirun" not in cmd[0] and "python" in cmd[0]:
                env = p.info["environ"] or {}
                if "PMI_RANK" in env:
                    ranks[int(env["PMI_RANK"])] = p
    return ranks


def wait_state(proxy, states, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if str(proxy.State()) in states:
                return
        except tango.DevFailed:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"device not in {states} after {timeout}s")


def test_killed_worker_rank_faults_the_scan_and_the_service_comes_back(stack, data_dir):
    dev = stack.register("dead", "w_dead")
    stack.start_service("w_dead", 3, supervised=True)
    try:
        proxy = stack.wait_device(dev)
        url = stack.env["REDIS_DATA_URL"]
        spec = ScanSpec("dead", str(data_dir / "dead.h5"), 1, 40, image_shape=(64, 64))
        pub = ScanPublisher(url, spec)
        wait_scan_exists(proxy, spec.name)
        pub.prepare_start()
        pub.send(10, batch=2)
        deadline = time.monotonic() + 20
        while not any("10pts-10pts" in line for line in proxy.scan_progress):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)  # at least one periodic flush (0.5 s) after the 10 points
        ranks = service_ranks("w_dead")
        assert sorted(ranks) == [0, 1, 2], ranks
        ranks[2].send_signal(signal.SIGKILL)
        for p in ranks.values():  # the whole MPI job goes down
            p.wait(30)
        # the supervisor restarts it; the device reports what happened
        wait_state(proxy, ("ON", "RUNNING"), timeout=90)
        assert "restarted" in proxy.Status() and "exited with code" in proxy.Status()
        assert proxy.scan_state(spec.name) == DevState.FAULT
        reason = proxy.scan_state_reason(spec.name)
        assert reason.startswith("interrupted:") and "last flush" in reason
        pub.send(5, batch=5)
        pub.stop_close()
        # the file is readable up to the last flush, and says it is not complete
        with h5py.File(spec.filename, "r", locking=False) as f:
            assert f["1.1/writer/status"][()] == b"FAILED"
            assert "interrupted" in f["1.1/writer/failure"][()].decode()
            frames = f["1.1/instrument/image/data"]
            assert frames.shape[0] >= 10
            np.testing.assert_array_equal(frames[:10], pub.expected("cam:image", 10))
        # and the next scan is written normally
        nxt = ScanPublisher(url, ScanSpec("dead", str(data_dir / "after.h5"), 2, 6, image_shape=(16, 16)))
        wait_scan_exists(proxy, nxt.spec.name)
        nxt.run()
        assert wait_scan_done(proxy, nxt.spec.name) == "OFF"
    finally:
        stack.stop_service("w_dead")


def _own_redis_service(stack, name: str):
    """A service of its own on a Redis of its own: these tests break Redis on purpose."""
    url = stack.start_redis(name=f"redis_{name}")
    dev = stack.register(name, f"w_{name}")
    stack.start_service(f"w_{name}", 3, extra_env={"REDIS_DATA_URL": url})
    return url, stack.wait_device(dev)


def test_redis_connections_dropped_mid_scan_the_scan_completes(stack, data_dir):
    import redis

    url, proxy = _own_redis_service(stack, "flaky")
    try:
        spec = ScanSpec("flaky", str(data_dir / "flaky.h5"), 1, 30, image_shape=(32, 32))
        pub = ScanPublisher(url, spec)
        wait_scan_exists(proxy, spec.name)
        pub.prepare_start()
        admin = redis.Redis.from_url(url)
        redis_port = int(url.rsplit(":", 1)[1])
        dropped = 0
        for _ in range(3):
            pub.send(10, batch=2)
            time.sleep(0.3)
            # drop every Redis connection of the writer service (rank 0 and the writer ranks)
            for proc in service_ranks("w_flaky").values():
                for conn in proc.net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == redis_port and conn.status == "ESTABLISHED":
                        dropped += admin.client_kill_filter(_id=None, addr=f"127.0.0.1:{conn.laddr.port}")
        assert dropped > 0
        pub.stop_close()
        assert wait_scan_done(proxy, spec.name) == "OFF", proxy.scan_state_reason(spec.name)
        from tests.helpers import assert_file_matches

        assert_file_matches(pub, 30)
    finally:
        stack.stop_service("w_flaky")
        stack.stop("redis_flaky")


def test_redis_restarted_mid_scan_faults_the_scan_then_new_scans_work(stack, data_dir):
    url, proxy = _own_redis_service(stack, "restart")
    try:
        spec = ScanSpec("restart", str(data_dir / "lost.h5"), 1, 30, image_shape=(32, 32))
        pub = ScanPublisher(url, spec)
        wait_scan_exists(proxy, spec.name)
        pub.prepare_start()
        pub.send(8, batch=2)
        deadline = time.monotonic() + 20
        while not any("8pts-8pts" in line for line in proxy.scan_progress):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stack.stop("redis_restart", timeout=5)  # no persistence: everything in Redis is lost
        time.sleep(2)
        port = int(url.rsplit(":", 1)[1])
        stack.start_redis(name="redis_restart", port=port)
        assert wait_scan_done(proxy, spec.name, 60) == "FAULT"
        reason = proxy.scan_state_reason(spec.name)
        assert "gone from Redis" in reason or "Redis unreachable" in reason, reason
        with h5py.File(spec.filename, "r", locking=False) as f:
            assert f["1.1/writer/status"][()] == b"FAILED"
            np.testing.assert_array_equal(f["1.1/instrument/image/data"][:8], pub.expected("cam:image", 8))
        # the session reconnected: the next scan (on the fresh Redis) is written
        wait_state(proxy, ("ON", "RUNNING"), 30)
        nxt = ScanPublisher(url, ScanSpec("restart", str(data_dir / "next.h5"), 2, 5, image_shape=(16, 16)))
        wait_scan_exists(proxy, nxt.spec.name, 30)
        nxt.run()
        assert wait_scan_done(proxy, nxt.spec.name) == "OFF", proxy.scan_state_reason(nxt.spec.name)
    finally:
        stack.stop_service("w_restart")
        stack.stop("redis_restart")


@pytest.fixture
def small_fs(tmp_path):
    """A 6 MiB tmpfs: a real full disk (needs root to mount)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_checks_answer_truthfully_on_a_small_disk(services, stack, small_fs):
    proxy = services.get(2)["n2"]  # default thresholds: 200 MB required, 1024 MB recommended
    spec = ScanSpec("n2", str(small_fs / "data.h5"), 51, 3, image_shape=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    wait_scan_exists(proxy, spec.name)
    assert proxy.scan_disk_space_error(spec.name) == "Free disk space below 200 MB"
    assert proxy.scan_disk_space_warning(spec.name) == "Free disk space below 1024 MB"
    assert proxy.scan_has_required_disk_space(spec.name) is False
    pub.run()
    assert wait_scan_done(proxy, spec.name) == "FAULT"
    assert proxy.scan_state_reason(spec.name) == "Free disk space below 200 MB"


def test_disk_full_during_the_scan(services, stack, small_fs):
    """No threshold: the disk really fills up. FAULT with the reason; flushed data stays readable."""
    proxy = services.get(3, ("full",), required_disk_space=0, recommended_disk_space=0)["full"]
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 65535, size=(8, 256, 256), dtype=np.uint16)  # incompressible
    spec = ScanSpec("full", str(small_fs / "full.h5"), 1, 120, image_shape=(256, 256), mca_channels=None,
                    chunk_options={"compression_scheme": "none"})
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec, frames=noise)
    wait_scan_exists(proxy, spec.name)
    pub.prepare_start()
    pub.send(10, batch=2)
    deadline = time.monotonic() + 20
    while not any("10pts-10pts" in line for line in proxy.scan_progress):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # flushed
    pub.send(110, batch=2)  # 15 MB more than 6 MiB can hold
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name, 60) == "FAULT"
    reason = proxy.scan_state_reason(spec.name)
    assert "No space left on device" in reason or "space" in reason.lower(), reason
    assert proxy.State() in (DevState.ON, DevState.RUNNING)
    with h5py.File(spec.filename, "r", locking=False) as f:
        frames = f["1.1/instrument/image/data"]
        assert frames.shape[0] >= 10
        np.testing.assert_array_equal(frames[:10], pub.expected("cam:image", 10))
