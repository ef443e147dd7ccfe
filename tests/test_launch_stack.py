"""`python -m launch.stack up|down` as a person runs it, with real processes: its own Tango database
whatever the shell's TANGO_HOST (unset, or another database), a refused second `up` in the same run
directory, nothing left running after a failed `up` or after `down`, help texts on every option."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tango

from launch.processes import marked
from launch.stack import ROOT, SSL_DIR, Stack


def stack_cli(*args: str, environ: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "launch.stack", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def shell_env(tango_host: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TANGO_HOST", "REDIS_DATA_URL", "ORBendPoint")}
    return env | ({"TANGO_HOST": tango_host} if tango_host else {})


@pytest.mark.integration
@pytest.mark.parametrize("tango_host", [None, "127.0.0.1:1"], ids=["TANGO_HOST unset", "TANGO_HOST elsewhere"])
def test_up_uses_its_own_tango_database_refuses_a_second_up_and_down_stops_everything(tmp_path, tango_host):
    rundir, env = tmp_path / "run", shell_env(tango_host)
    up = stack_cli("up", "--rundir", str(rundir), "--ranks", "2", "--session", "own", environ=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "TANGO_HOST env. variable not set" not in up.stderr and "not ready" not in up.stderr
        stack = Stack(rundir)
        assert stack.env["TANGO_HOST"] != tango_host
        device = tango.DeviceProxy(stack.device_url("id00/bliss_nxwriter/own"))
        assert str(device.state()) == "ON"
        first = set(stack.running())
        again = stack_cli("up", "--rundir", str(rundir), "--ranks", "2", "--session", "own", environ=env)
        assert again.returncode != 0 and "a stack is running in" in again.stderr, again.stderr
        assert set(stack.running()) == first and str(device.state()) == "ON"
        down = stack_cli("down", "--rundir", str(rundir), environ=env)
        assert down.returncode == 0, down.stderr
        assert marked(rundir.resolve()) == [] and not list(rundir.glob("*.pid"))
    finally:
        Stack(rundir).down()


@pytest.mark.integration
def test_a_failed_up_leaves_nothing_running(tmp_path):
    """Redis and the Tango database start, then the registration fails (no RegisterNexusWriter in the
    environment NXPAR_VENV names): `up` says so in one line and stops what it started."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib").mkdir()
    (venv / "lib" / SSL_DIR.name).symlink_to(SSL_DIR)
    rundir = tmp_path / "run"
    up = stack_cli("up", "--rundir", str(rundir), environ=shell_env(None) | {"NXPAR_VENV": str(venv)})
    try:
        assert up.returncode == 1 and "everything it started is stopped" in up.stderr, up.stderr
        assert "Traceback" not in up.stderr and len(up.stderr.strip().splitlines()) == 1, up.stderr
        assert (rundir / "redis.log").exists() and (rundir / "tango_db.log").exists()  # they had started
        assert marked(rundir.resolve()) == [] and not list(rundir.glob("*.pid"))
    finally:
        Stack(rundir).down()


def test_every_option_has_a_help_text():
    from launch.stack import build_parser

    actions = [a for a in build_parser()._actions if a.dest != "help"]
    assert actions and all(a.help for a in actions), [a.dest for a in actions if not a.help]


@pytest.mark.slow
def test_the_package_ships_the_supervision_texts_and_their_console_script(tmp_path):
    """`pip wheel` of the project (a copy: the build writes into its source): the templates are package
    data, nxpar-supervision a console script."""
    import shutil
    import zipfile

    src = tmp_path / "src"
    shutil.copytree(ROOT / "nxpar", src / "nxpar", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    wheel = zipfile.ZipFile(next(Path(tmp_path).glob("nxpar-*.whl")))
    names = wheel.namelist()
    for template in ("supervisord.conf", "systemd.service"):
        assert f"nxpar/service/supervision_templates/{template}" in names
    entry_points = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "nxpar-supervision = nxpar.service.supervision:main" in entry_points
