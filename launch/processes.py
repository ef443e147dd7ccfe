"""The processes of an embedded stack (launch/stack.py): started with a mark in their environment, found
by it and stopped by PID — never by name, so that other people's servers on the same host are left alone.

Every process the stack starts carries NXPAR_STACK_RUNDIR (the run directory) and NXPAR_STACK_NAME (e.g.
`service_w_demo`) in its environment, and so do its children (mpirun's ranks, supervisord's job):
`marked(rundir)` finds them all, also those whose parent is gone.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Callable

RUNDIR_MARK = "NXPAR_STACK_RUNDIR"
NAME_MARK = "NXPAR_STACK_NAME"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait(what: str, ready: Callable[[], bool], timeout: float, proc=None, logfile: Path | None = None) -> None:
    """Until ready() is true; a started process `proc` that exits meanwhile fails at once (with its log)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = logfile.read_text()[-3000:] if logfile and logfile.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting:\n{tail}")
        try:
            if ready():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout}s ({last})")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours counts as gone
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def marked(rundir: Path, name: str = "") -> list[int]:
    """PIDs of the live processes started from `rundir` (by the stack or by its children), of `name` only
    if given."""
    wanted = {f"{RUNDIR_MARK}={rundir}".encode()} | ({f"{NAME_MARK}={name}".encode()} if name else set())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:  # gone, or not ours to read
            continue
        if wanted <= environ and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def kill_marked(rundir: Path, name: str = "") -> list[int]:
    """SIGKILL whatever `marked` finds; returns the PIDs."""
    pids = marked(rundir, name)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return pids


def stop_pidfile(pidfile: Path, timeout: float = 20) -> None:
    """SIGTERM the process group, wait, then SIGKILL; remove the PID file."""
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
        if not alive(pid):
            break
    try:  # any straggler of the group
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)
