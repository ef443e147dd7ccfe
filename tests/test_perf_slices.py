"""CPU slices (perf/core/slices.py) on the real cgroup v1 cpu controller: a process placed in its slice
is held to its quota and counted, and every slice goes when the run ends, fails, is stopped by SIGTERM,
or was left by a run that died. Skipped where slices cannot be made (not root, no cgroup v1)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from perf.core.box import Role, SliceSpec
from perf.core.slices import CPU, CPUACCT, PREFIX, SliceSet, remove_stale, unavailable
from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=unavailable() or "")

BUSY = "import time\nt = time.time()\nwhile time.time() - t < 0.6: pass\n"


def test_a_process_in_its_slice_is_held_to_its_quota_and_counted():
    with SliceSet(SliceSpec(writer=0.05, period_us=10_000)) as slices:
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(); " + BUSY.replace("\n", "; ")],
                                 stdin=subprocess.PIPE, text=True)
        s = slices.place(child.pid, Role.WRITER, "w")
        assert s.pids() == [child.pid] and s.quota_us == 1000
        t0 = time.monotonic()
        child.communicate("")  # start spinning for 0.6 s of wall time, at 5 % of a core
        wall = time.monotonic() - t0
        stat = s.throttling()
        assert stat.periods > 10 and stat.throttled > stat.periods // 2
        assert 0 < s.usage_s() < 0.5 * wall  # far less CPU than the wall time it spun
        names = [d.name for d in s.dirs if d is not None]
    assert not any((CPU / n).exists() or (CPUACCT / n).exists() for n in names)


def test_slices_go_when_the_run_is_stopped_by_sigterm():
    code = ("from perf.core.box import SliceSpec\nfrom perf.core.slices import SliceSet\nimport time\n"
            "with SliceSet(SliceSpec()) as s:\n    s.slice('x', 5000)\n    print('ready', flush=True)\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "ready"
    assert (CPU / f"{PREFIX}{proc.pid}-x").exists()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert not (CPU / f"{PREFIX}{proc.pid}-x").exists()


def test_slices_left_by_a_dead_run_are_removed():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    left = CPU / f"{PREFIX}{dead}-writer1"
    left.mkdir()
    assert left.name in remove_stale() and not left.exists()
