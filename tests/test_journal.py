"""The journal of in-flight scans: one per service (Tango instance and database), session and Redis; found
by a restarted service, also on another host through a shared NXPAR_STATE_DIR; never fatal."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nxpar.driver.journal import Journal, journal_path, state_dir
from tests.helpers import ROOT


@pytest.fixture
def shared(tmp_path, monkeypatch):
    monkeypatch.setenv("NXPAR_STATE_DIR", str(tmp_path / "shared"))
    return tmp_path / "shared"


def test_path_is_keyed_by_service_session_and_redis_under_the_state_dir(shared):
    assert state_dir() == shared
    j = Journal("demo", "nexuswriters@tango:10000", "redis://r:6379")
    assert j.path.parent == shared / "nexuswriters@tango%3A10000"
    assert j.path.name.startswith("demo.") and j.path.name.endswith(".journal.json")
    assert Journal("demo", "nexuswriters@tango:10000", "redis://other:6379").path != j.path
    # any Tango/BLISS name stays one path component
    assert journal_path("a/b", "../x", "", shared) == shared / "a%2Fb" / "..%2Fx.any.journal.json"


def test_the_default_state_dir_outlives_a_reboot(monkeypatch):
    monkeypatch.delenv("NXPAR_STATE_DIR", raising=False)
    assert str(state_dir()) in ("/var/lib/nxpar", str(Path.home() / ".local" / "state" / "nxpar"))


def test_two_services_with_the_same_session_never_touch_each_others_entries(shared):
    a, b = Journal("demo", "writers_a@t:1"), Journal("demo", "writers_b@t:1")
    a.opened("scan:1", "1_ascan", "/data/a.h5", ["1.1"])
    b.opened("scan:2", "2_ascan", "/data/b.h5", ["2.1"])
    assert [e.key for e in Journal("demo", "writers_a@t:1").pending()] == ["scan:1"]
    assert [e.key for e in Journal("demo", "writers_b@t:1").pending()] == ["scan:2"]


def test_a_scan_is_recorded_from_discovery_to_close(shared):
    j = Journal("demo", "w")
    j.discovered("k1", "1_ascan")
    j.discovered("k2", "2_ascan")
    assert [(e.key, e.filename) for e in j.pending()] == [("k1", ""), ("k2", "")]
    j.opened("k2", "2_ascan", "/data/a.h5", ["2.1"])
    j.remove("k1")
    (entry,) = j.pending()
    assert (entry.key, entry.filename, entry.entries, entry.resumes) == ("k2", "/data/a.h5", ["2.1"], 0)
    assert entry.host and entry.since > 0
    assert j.pending() == [entry]  # pending scans stay until their file is closed
    assert [p.name for p in j.path.parent.iterdir()] == [j.path.name]  # no temporary files left


def test_discovery_goes_on_from_where_the_last_run_stopped(shared):
    j = Journal("demo", "w", "redis://x:1")
    assert j.load_since() is None
    j.save_since("1700000000000-3")
    j.discovered("k", "1_ascan")
    again = Journal("demo", "w", "redis://x:1")
    assert again.load_since() == "1700000000000-3"
    assert [e.key for e in again.pending()] == ["k"]  # the position is not a scan


RESTART = """
import json, socket, sys
from nxpar.driver.journal import Journal
import dataclasses
print(json.dumps({"host": socket.gethostname(),
                  "taken": {e.key: dataclasses.asdict(e) for e in Journal(sys.argv[1], sys.argv[2]).pending()}}))
"""


def test_a_restart_on_another_host_finds_the_interrupted_scans(shared):
    """Another process, with another host name (its own UTS namespace), and the shared state dir."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--uts", "true"]).returncode != 0:
        pytest.skip("unshare --uts is not permitted here (needs root): cannot give a process another host name")
    Journal("demo", "nexuswriters").opened("scan:7", "7_ascan", "/data/s.h5", ["7.1"])
    cmd = ["unshare", "--uts", "sh", "-c", 'hostname nxpar-node-b && exec "$@"', "sh",
           sys.executable, "-c", RESTART, "demo", "nexuswriters"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(out.stdout)
    assert result["host"] == "nxpar-node-b"
    assert result["taken"]["scan:7"]["filename"] == "/data/s.h5"
    assert result["taken"]["scan:7"]["entries"] == ["7.1"]
    assert result["taken"]["scan:7"]["host"] != "nxpar-node-b"  # written by this host


def test_an_unusable_state_dir_is_a_warning_never_an_exception(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setenv("NXPAR_STATE_DIR", str(blocker / "state"))
    j = Journal("demo", "w")
    problem = j.check()
    assert "cannot be kept" in problem and "Not a directory" in problem
    j.opened("k", "1_ascan", "/data/a.h5", ["1.1"])  # no exception
    j.remove("k")
    assert j.pending() == []
    assert any("cannot be kept" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_a_corrupt_journal_is_read_as_empty(shared):
    j = Journal("demo", "w")
    j.path.parent.mkdir(parents=True)
    j.path.write_text("{not json")
    assert j.pending() == []
    j.opened("k", "1_ascan", "/data/a.h5", ["1.1"])
    assert [e.key for e in j.pending()] == ["k"]
