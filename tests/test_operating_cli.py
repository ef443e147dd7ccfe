"""Errors as one clear line (issue 22 item 7): every command run as an operator runs it, in the wrong
environment or with a wrong argument — one line saying why, an exit status ≠ 0, no traceback, under mpirun
no "BAD TERMINATION" (the writer ranks leave cleanly). Also the log levels the commands really use, the
SLURM script's exit reporting and `--help`, and `python -m perf replay --session`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

VENV_BIN = ROOT / ".venv" / "bin"


def run(cmd: list[str], env_drop: tuple[str, ...] = (), timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in env_drop} | {"PYTHONPATH": str(ROOT)} | env
    return subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=timeout, cwd=ROOT)


def assert_one_error_line(proc: subprocess.CompletedProcess, words: str) -> str:
    """One error line on stderr, naming the problem (warnings may come before it); nothing that looks
    like a crash anywhere."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    lines = [line for line in proc.stderr.strip().splitlines() if " WARN " not in line[:40]]
    assert len(lines) == 1 and words in lines[0], out
    assert "Traceback" not in out and "BAD TERMINATION" not in out and "Killed" not in out, out
    return lines[0]


def test_register_without_tango_host_says_so_in_one_line(tmp_path):
    proc = run([sys.executable, "-m", "nxpar.service.register", "demo"], env_drop=("TANGO_HOST",), HOME=str(tmp_path))
    line = assert_one_error_line(proc, "TANGO_HOST env. variable not set")
    assert proc.returncode == 1 and line.startswith("RegisterNexusWriter: cannot use the Tango database: "), line


def test_slurm_script_help_needs_no_tango_host_and_reports_how_the_service_died(tmp_path):
    script = ROOT / "SLURM" / "nxpar.sbatch"
    helped = run(["bash", str(script), "--help"], env_drop=("TANGO_HOST",))
    assert helped.returncode == 0 and "NXPAR_MAX_RESTARTS" in helped.stdout and "--dry-run" in helped.stdout
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 3\n")
    (fake / "srun").chmod(0o755)
    died = run(["bash", str(script), "inst"], PATH=f"{fake}:{os.environ['PATH']}", TANGO_HOST="h:1",
               NXPAR_MAX_RESTARTS="1", NXPAR_RESTART_DELAY="0", NXPAR_STATE_DIR=str(tmp_path / "state"))
    assert died.returncode == 1
    assert died.stderr.count("service died with exit status 3") == 2, died.stderr
    assert "restarting in 0 s" in died.stderr and "giving up after 1 restarts" in died.stderr


@pytest.mark.slow
def test_batch_on_an_unreachable_redis_says_so_in_one_line():
    proc = run(["mpirun", "-n", "2", sys.executable, "-m", "nxpar.service.batch", "redis://127.0.0.1:1"])
    line = assert_one_error_line(proc, "cannot use Redis redis://127.0.0.1:1: ConnectionError")
    assert proc.returncode == 2 and line.startswith("[rank 0] ERROR"), line


@pytest.mark.slow
def test_a_bad_batch_option_is_refused_once_naming_the_range():
    proc = run(["mpirun", "-n", "2", sys.executable, "-m", "nxpar.service.batch", "redis://h:1", "--flush-period", "-1"])
    assert proc.returncode == 2
    assert proc.stderr.count("argument --flush-period: '-1': a number of seconds from 0.05 to 3600 expected") == 1, \
        proc.stderr
    assert proc.stderr.count("usage: NexusWriterBatch") == 1


@pytest.mark.slow
def test_the_service_without_tango_host_says_so_in_one_line_and_its_ranks_leave(tmp_path):
    proc = run(["mpirun", "-n", "3", str(VENV_BIN / "NexusWriterService"), "nowhere"], env_drop=("TANGO_HOST",),
               HOME=str(tmp_path))
    line = assert_one_error_line(proc, "cannot use the Tango database: ConnectionFailed: TANGO_HOST env. variable")
    assert proc.returncode == 1 and line.startswith("[rank 0] ERROR"), line


def test_the_service_of_an_instance_nobody_registered_says_so_in_one_line(stack):
    proc = run(["mpirun", "-n", "2", str(VENV_BIN / "NexusWriterService"), "w_nobody"])
    assert_one_error_line(proc, "no device is registered for the Tango server nexuswriter/w_nobody in the Tango "
                                f"database {stack.env['TANGO_HOST']}: register one with `RegisterNexusWriter")


def test_register_logs_info_by_default_and_nothing_below_the_level_asked(stack):
    default = run([sys.executable, "-m", "nxpar.service.register", "op_levels", "--instance", "w_levels"])
    assert default.returncode == 0 and default.stdout.startswith("INFO ") and "registered NexusWriter" in default.stdout
    quiet = run([sys.executable, "-m", "nxpar.service.register", "op_levels", "--instance", "w_levels",
                 "--log", "WARNING"])
    assert quiet.returncode == 0 and quiet.stdout.strip() == "id00/bliss_nxwriter/op_levels", quiet.stdout


@pytest.mark.slow
def test_replay_takes_the_session_and_says_its_default(tmp_path):
    helped = run([sys.executable, "-m", "perf", "replay", "--help"])
    assert "--session SESSION" in helped.stdout and "(default replay)" in helped.stdout
    out = tmp_path / "replay.json"
    proc = run([sys.executable, "-m", "perf", "replay", "--session", "my_session", "--ranks", "2", "--frames", "8",
                "--shape", "32", "32", "--repeat", "2", "--json", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scans = [r for r in json.loads(Path(out).read_text())["runs"] if r["kind"] == "scan"]
    assert [(s["session"], s["state"]) for s in scans] == [("my_session", "OFF")] * 2, scans
    faulty = run([sys.executable, "-m", "perf", "replay", "--ranks", "2", "--frames", "4", "--shape", "16", "16",
                  "--compression", "nonsense", "--json", str(tmp_path / "faulty.json")], timeout=300)
    assert faulty.returncode == 0 and "scan 1_ascan of session replay: FAULT: Unknown HDF5 compression 'nonsense'" \
        in faulty.stdout, faulty.stdout[-3000:] + faulty.stderr[-3000:]
