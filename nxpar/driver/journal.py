"""RANK 0 ONLY: a small on-disk journal of the scans being written, per Tango instance and session.

If the MPI job dies (a killed rank takes it down), the restarted service finds the scans that were
in flight: it reports them FAULT with the reason (BLISS then fails those scans) and marks their
files FAILED, so a reader never takes a partial file for a complete one.

Where: `$NXPAR_STATE_DIR/<instance>/<session>.inflight.json` (default state dir `/tmp/nxpar-<uid>`).
On a cluster NXPAR_STATE_DIR is on shared storage, so a service restarted on another node finds the
journal; the instance in the path keeps two services (on one host or sharing the directory) apart.
Nothing here ever raises: an unwritable state directory is a warning (the scans are still written,
only a restart would not report them).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..protocol import steps as st
from .states import State
from .writer_channel import StepError, WriterChannel

log = logging.getLogger("nxpar.journal")


def state_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"nxpar-{os.getuid()}"
    return Path(os.environ.get("NXPAR_STATE_DIR") or default)


def journal_path(instance: str, session: str, root: Path | None = None) -> Path:
    """One file per (Tango instance, session); names quoted so that any name is one path component."""
    return (root or state_dir()) / quote(instance or "_", safe="") / f"{quote(session, safe='')}.inflight.json"


class Journal:
    def __init__(self, session: str, instance: str = "", root: Path | None = None) -> None:
        self.path = journal_path(instance, session, root)
        self._lock = threading.Lock()
        self._warned = ""

    def check(self) -> str:
        """'' if the journal can be kept, else why not (also logged as a warning)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            probe = self._tmp_path()
            probe.write_text("")
            probe.unlink()
            return ""
        except OSError as e:
            return self._warn(e)

    def _warn(self, error: OSError) -> str:
        message = (f"journal {self.path} cannot be kept ({error}): scans are written, but a restarted "
                   "service will not report the ones this run leaves unfinished")
        if message != self._warned:
            log.warning("%s", message)
            self._warned = message
        return message

    def _tmp_path(self) -> Path:
        # unique per writer: another node may share the directory (NFS: no O_TMPFILE, no flock)
        return self.path.with_name(f".{self.path.name}.{socket.gethostname()}.{os.getpid()}.tmp")

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}
        except OSError as e:
            self._warn(e)
            return {}

    def _save(self, entries: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp_path()
            tmp.write_text(json.dumps(entries))
            os.replace(tmp, self.path)
        except OSError as e:
            self._warn(e)

    def add(self, key: str, name: str, filename: str, entries: list[str]) -> None:
        with self._lock:
            data = self._load()
            data[key] = {"name": name, "filename": filename, "entries": entries, "since": time.time(),
                         "host": socket.gethostname()}
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
    """A `ScanStatus` (states.py) of a scan whose writer died with the previous MPI job: always
    FAULT, never alive."""

    plan = None
    bytes_written = 0
    warning = ""
    interrupted = True

    def __init__(self, key: str, name: str, filename: str, entries: list[str], reason: str) -> None:
        self.key, self.name, self.filename = key, name, filename
        self.state, self.reason = State.FAULT, reason
        self.created = self.start_time = self.end_time = time.time()
        self.urls = [f"{filename}::/{e}" for e in entries]

    def is_alive(self) -> bool:
        return False

    def stop(self, timeout: float | None = None) -> None:
        pass

    def kill(self) -> None:
        pass

    def progress(self) -> dict[str, dict[str, int]]:
        return {}

    def backlog(self) -> int:
        return 0

    def published(self) -> int:
        return 0


def recover_interrupted(journal: Journal, channel: WriterChannel, why: str) -> list[InterruptedScan]:
    """The scans a previous (dead) run was writing: each file marked FAILED where the scan did not
    finish, each scan an InterruptedScan (FAULT with the reason)."""
    journal.check()  # an unusable state directory is a warning, not a FAULT
    scans = []
    for key, item in journal.take_all().items():
        reason = (f"interrupted: {why} while this scan was being written; "
                  "the file holds the data up to the last flush")
        try:
            channel.call(st.MarkFailed(item["filename"], item["entries"], reason))
        except StepError as e:
            reason += f" (could not mark the file: {e})"
        log.error("scan %s: %s", item["name"], reason)
        scans.append(InterruptedScan(key, item["name"], item["filename"], item["entries"], reason))
    return scans
