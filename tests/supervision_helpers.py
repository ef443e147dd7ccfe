"""What tests/test_supervision.py and tests/test_stopping.py share: the run marker of a stack's service,
waiting for processes to be gone, what a cleanly stopped service leaves."""
from __future__ import annotations

import json
import time
from pathlib import Path

import h5py

from nxpar.service.run_marker import marker_path

CLEAN_STOP_S = 10  # issue 22: a clean stop takes at most this long


def marker(stack, instance: str) -> dict:
    return json.loads(marker_path(instance, stack.rundir / "state").read_text())


def wait_gone(pids, timeout: float = CLEAN_STOP_S) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{p}").exists() and _not_zombie(p) for p in pids):
        assert time.monotonic() < deadline, f"still running after {timeout} s: {pids}"
        time.sleep(0.1)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_log(path: Path, text: str, count: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while path.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not in {path} after {timeout} s"
        time.sleep(0.2)


def assert_failed_with_end_time(filename: str, entry: str = "1.1") -> None:
    with h5py.File(filename, "r", locking=False) as f:
        assert f[f"{entry}/writer/status"][()] == b"FAILED"
        assert f[f"{entry}/end_time"][()]


def assert_clean_log(text: str) -> None:
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    assert "BAD TERMINATION" not in text, text[-3000:]
