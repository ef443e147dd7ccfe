"""Fixtures: the REAL embedded stack (Redis + RediSearch/ReJSON, Tango DB, mpirun services).

One Redis and one Tango database for the whole run; one `mpirun -n N NexusWriterService` per
rank count, started on first use and stopped by PID at the end.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launch.stack import Stack  # noqa: E402


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("stack"))
    try:
        st.start_redis()
        st.start_tango_db()
        os.environ.update(st.env)
        yield st
    finally:
        st.down()


class Services:
    """Starts one writer service per (ranks, sessions) and keeps it for the run."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started: dict[str, dict[str, str]] = {}

    def get(self, ranks: int, sessions: tuple[str, ...] | None = None, extra_env: dict | None = None,
            **props) -> dict[str, "object"]:

        sessions = sessions or (f"n{ranks}",)
        instance = "w_" + "_".join(sessions)
        if instance not in self.started:
            devices = {s: self.stack.register(s, instance, **props) for s in sessions}
            self.stack.start_service(instance, ranks, "INFO", extra_env=extra_env)
            self.started[instance] = devices
        devices = self.started[instance]
        return {s: self.stack.wait_device(d) for s, d in devices.items()} | {"_names": devices}


@pytest.fixture(scope="session")
def services(stack):
    return Services(stack)


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path


def wait_scan_done(proxy, name: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = str(proxy.scan_state(name))
        if state in ("OFF", "FAULT"):
            return state
        time.sleep(0.05)
    raise TimeoutError(f"scan {name} still {proxy.scan_state(name)} after {timeout}s")


def wait_scan_exists(proxy, name: str, timeout: float = 10) -> None:
    """BLISS fails the scan if the writer has not registered it within 10 s."""
    deadline = time.monotonic() + timeout
    while not proxy.scan_exists(name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"writer did not receive scan {name} after {timeout}s")
        time.sleep(0.05)


def wait_progress(proxy, name: str, text: str, timeout: float = 20) -> None:
    """Until the scan_progress line of scan `name` contains `text` (e.g. '10pts-10pts')."""
    deadline = time.monotonic() + timeout
    while not any(line.strip().startswith(f"{name}:") and text in line for line in proxy.scan_progress):
        if time.monotonic() > deadline:
            raise TimeoutError(f"scan_progress never showed {text!r}: {list(proxy.scan_progress)}")
        time.sleep(0.05)


def start_scan(proxy, url: str, spec, points: int = 0, batch: int = 1):
    """A scan the writer has registered, PREPARED and STARTED, with its first `points` published."""
    from nxpar.simulate import ScanPublisher

    pub = ScanPublisher(url, spec)
    wait_scan_exists(proxy, spec.name)
    pub.prepare_start()
    if points:
        pub.send(points, batch=batch)
    return pub


def run_scan(proxy, url: str, spec, batch: int = 1, expect: str = "OFF"):
    """A whole scan, published as BLISS does; the writer must end it in state `expect`."""
    from nxpar.simulate import ScanPublisher

    pub = ScanPublisher(url, spec)
    wait_scan_exists(proxy, spec.name)
    pub.run(batch=batch)
    state = wait_scan_done(proxy, spec.name)
    assert state == expect, proxy.scan_state_reason(spec.name)
    return pub
