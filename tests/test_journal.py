"""The journal of in-flight scans for clusters (issue 15): keyed by Tango instance and session, found
by a restarted service on another host through a shared NXPAR_STATE_DIR, never fatal."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from nxpar.driver.journal import Journal, journal_path, state_dir
from tests.helpers import ROOT


@pytest.fixture
def shared(tmp_path, monkeypatch):
    monkeypatch.setenv("NXPAR_STATE_DIR", str(tmp_path / "shared"))
    return tmp_path / "shared"


def test_path_is_keyed_by_instance_and_session_under_the_state_dir(shared):
    assert state_dir() == shared
    assert Journal("demo", "nexuswriters").path == shared / "nexuswriters" / "demo.inflight.json"
    # any Tango/BLISS name stays one path component
    assert journal_path("a/b", "../x", shared) == shared / "a%2Fb" / "..%2Fx.inflight.json"


def test_two_services_with_the_same_session_never_touch_each_others_entries(shared):
    a, b = Journal("demo", "writers_a"), Journal("demo", "writers_b")
    a.add("scan:1", "1_ascan", "/data/a.h5", ["1.1"])
    b.add("scan:2", "2_ascan", "/data/b.h5", ["2.1"])
    assert set(Journal("demo", "writers_a").take_all()) == {"scan:1"}
    assert Journal("demo", "writers_a").take_all() == {}  # taken once
    assert set(Journal("demo", "writers_b").take_all()) == {"scan:2"}


def test_entries_are_removed_when_the_scan_file_is_closed(shared):
    j = Journal("demo", "w")
    j.add("k1", "1_ascan", "/data/a.h5", ["1.1"])
    j.add("k2", "2_ascan", "/data/a.h5", ["2.1"])
    j.remove("k1")
    data = json.loads(j.path.read_text())
    assert set(data) == {"k2"} and data["k2"]["entries"] == ["2.1"] and data["k2"]["host"]
    assert [p.name for p in j.path.parent.iterdir()] == ["demo.inflight.json"]  # no temporary files left


RESTART = """
import json, socket, sys
from nxpar.driver.journal import Journal
print(json.dumps({"host": socket.gethostname(), "taken": Journal(sys.argv[1], sys.argv[2]).take_all()}))
"""


def test_a_restart_on_another_host_finds_the_interrupted_scans(shared):
    """Another process, with another host name (its own UTS namespace), and the shared state dir."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--uts", "true"]).returncode != 0:
        pytest.skip("unshare --uts is not permitted here (needs root): cannot give a process another host name")
    Journal("demo", "nexuswriters").add("scan:7", "7_ascan", "/data/s.h5", ["7.1"])
    cmd = ["unshare", "--uts", "sh", "-c", 'hostname nxpar-node-b && exec "$@"', "sh",
           sys.executable, "-c", RESTART, "demo", "nexuswriters"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(out.stdout)
    assert result["host"] == "nxpar-node-b"
    assert result["taken"]["scan:7"]["filename"] == "/data/s.h5"
    assert result["taken"]["scan:7"]["entries"] == ["7.1"]
    assert Journal("demo", "nexuswriters").take_all() == {}


def test_an_unusable_state_dir_is_a_warning_never_an_exception(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setenv("NXPAR_STATE_DIR", str(blocker / "state"))
    j = Journal("demo", "w")
    problem = j.check()
    assert "cannot be kept" in problem and "Not a directory" in problem
    j.add("k", "1_ascan", "/data/a.h5", ["1.1"])  # no exception
    j.remove("k")
    assert j.take_all() == {}
    assert any("cannot be kept" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_a_corrupt_journal_is_read_as_empty(shared):
    j = Journal("demo", "w")
    j.path.parent.mkdir(parents=True)
    j.path.write_text("{not json")
    assert j.take_all() == {}
    j.add("k", "1_ascan", "/data/a.h5", ["1.1"])
    assert set(j.take_all()) == {"k"}
