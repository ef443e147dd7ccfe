"""The file BLISS's scans produced (all entries of the tier so far, in one dataset file) passes punx
with no ERROR but the entry names the ESRF layout itself uses ('2.1' is not a NeXus name)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.bliss.bliss_stack import ROOT

pytestmark = pytest.mark.bliss


def test_punx_validates_the_bliss_file(ran):
    (scan,) = ran("ascan")  # at least this entry; after the other modules: all of them
    with scan.open() as f:
        entries = sorted(k for k in f)
    out = subprocess.run([str(ROOT / ".venv-punx" / "bin" / "punx"), "validate", scan.filename],
                         capture_output=True, text=True, timeout=300, cwd=Path(scan.filename).parent).stdout
    assert "summary statistics" in out, out[-2000:]
    errors = [line.split() for line in out.splitlines() if " ERROR " in line and line.startswith("/")]
    assert sorted(e[0] for e in errors) == sorted(f"/{k}" for k in entries), errors
    assert all(e[2] == "validItemName" for e in errors), errors
