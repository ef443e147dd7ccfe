"""RANK 0 ONLY: a small on-disk journal of the scans being written, per session.

If the MPI job dies (a killed rank takes it down), the restarted service finds the scans that were
in flight: it reports them FAULT with the reason (BLISS then fails those scans) and marks their
files FAILED, so a reader never takes a partial file for a complete one.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("nxpar.journal")


def state_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"nxpar-{os.getuid()}"
    return Path(os.environ.get("NXPAR_STATE_DIR", default))


class Journal:
    def __init__(self, session: str) -> None:
        self.path = state_dir() / f"{session}.inflight.json"
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self, entries: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, self.path)

    def add(self, key: str, name: str, filename: str, entries: list[str]) -> None:
        with self._lock:
            data = self._load()
            data[key] = {"name": name, "filename": filename, "entries": entries, "since": time.time()}
            self._save(data)

    def remove(self, key: str) -> None:
        with self._lock:
            data = self._load()
            if data.pop(key, None) is not None:
                self._save(data)

    def take_all(self) -> dict[str, Any]:
        """The scans a previous run left unfinished (and forget them)."""
        with self._lock:
            data = self._load()
            if data:
                self._save({})
            return data


class InterruptedScan:
    """Stands for a scan whose writer died with the previous MPI job: always FAULT, never alive."""

    plan = None
    bytes_written = 0

    def __init__(self, key: str, name: str, filename: str, entries: list[str], reason: str) -> None:
        self.key, self.name, self.filename = key, name, filename
        self.state, self.reason = "FAULT", reason
        self.created = self.start_time = self.end_time = time.time()
        self.urls = [f"{filename}::/{e}" for e in entries]

    def is_alive(self) -> bool:
        return False

    def stop(self, timeout: float | None = None) -> None:
        pass

    kill = stop

    def progress(self) -> dict[str, dict[str, int]]:
        return {}

    def start_str(self) -> str:
        return "interrupted"

    end_str = start_str

    def duration(self):
        import datetime

        return datetime.timedelta(0)

    def backlog(self) -> int:
        return 0

    def published(self) -> int:
        return 0
