"""The two NexusWriter services the reference comparison runs BLISS against, one at a time, on the
tier's stack: nxpar (`mpirun -n RANKS NexusWriterService`) and the reference, blisswriter 2.0.0
(`.venv-reference/bin/NexusWriterService`, launch/setup_reference.sh).

Both are Tango class `NexusWriter` of server `nexuswriter/<instance>`: the device registered for the
session (RegisterNexusWriter) is the same, served by whichever process runs. `Writers.use(kind)` stops
the one running and starts the other; BLISS's proxy to the device reconnects by itself. nxpar is always
restarted with a fresh state directory: its journal would otherwise have it catch up the scans the
reference wrote while it was down (discovery continues from where it stopped, driver/journal.py).
"""
from __future__ import annotations

import enum
import itertools
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.bliss.bliss_stack import ROOT, BlissStack

REFERENCE_VENV = ROOT / ".venv-reference"
SETUP_REFERENCE = ROOT / "launch" / "setup_reference.sh"


class WriterKind(enum.Enum):
    NXPAR = "nxpar"
    REFERENCE = "reference"  # blisswriter 2.0.0


def ensure_reference() -> Path:
    """launch/setup_reference.sh (cached, offline); returns the reference's NexusWriterService."""
    out = subprocess.run(["bash", str(SETUP_REFERENCE)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"launch/setup_reference.sh failed:\n{out.stdout}{out.stderr}")
    return REFERENCE_VENV / "bin" / "NexusWriterService"


@dataclass
class Writers:
    """Which writer serves the session's device of `stack` (nxpar when the stack started)."""

    stack: BlissStack
    instance: str
    ranks: int
    running: WriterKind = WriterKind.NXPAR
    _restarts: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def proxy(self):
        return self.stack.proxy

    def use(self, kind: WriterKind) -> None:
        """Stop the running writer, start `kind`, wait until its device is ON."""
        if kind == self.running:
            return
        self._stop(self.running)
        self._start(kind)
        self.running = kind
        self.stack.wait_device(self.stack.devname, timeout=120)

    def _stop(self, kind: WriterKind) -> None:
        if kind == WriterKind.NXPAR:
            self.stack.stop_service(self.instance)
        else:
            self.stack.stop(self._reference_name())

    def _start(self, kind: WriterKind) -> None:
        if kind == WriterKind.NXPAR:
            state = self.stack.rundir / f"state_restart{next(self._restarts)}"
            level = os.environ.get("NXPAR_TIER_LOG", "INFO")  # DEBUG: each scan's phases (scan_log.py)
            self.stack.start_service(self.instance, self.ranks, level, extra_env={"NXPAR_STATE_DIR": str(state)})
            return
        service = ensure_reference()
        # nothing of this checkout on its path: blisswriter is the real one, not launch/bliss_env's stand-in
        env = {"PYTHONPATH": "", "PYTHONWARNINGS": "ignore::FutureWarning"}
        level = os.environ.get("NXPAR_REFERENCE_LOG", "WARNING")  # INFO: what it does with each scan
        self.stack._spawn(self._reference_name(), [str(service), self.instance, f"--log={level}"], env=env)

    def _reference_name(self) -> str:
        return f"service_reference_{self.instance}"
