"""RANK 0 ONLY: a small on-disk journal per service and session: the scans being written, and where
scan discovery has got to.

A scan is recorded when it is discovered (before its file exists), again with its file and entries
when the file is opened, and forgotten once the file is closed. If the MPI job dies (kill -9 of any
rank, node loss, the watchdog stopping a stalled job), the restarted service finds every scan that was
in flight here and resumes it from Redis (driver/resume.py), and discovery continues from the last
scan it handed over, so that scans created while no job ran are written too.

Where: `$NXPAR_STATE_DIR/<instance>@<tango host>/<session>.<redis>.journal.json` — one journal per
service (Tango instance and database) and Redis, so unrelated services never share one. Default state
dir: /var/lib/nxpar for root, else ~/.local/state/nxpar (kept across reboots). On a cluster
NXPAR_STATE_DIR is on shared storage, so a service restarted on another node finds the journal.
Nothing here ever raises: an unwritable state directory is a warning (the scans are still written,
only a restart could not resume them).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .states import State

log = logging.getLogger("nxpar.journal")


def state_dir() -> Path:
    if os.environ.get("NXPAR_STATE_DIR"):
        return Path(os.environ["NXPAR_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/nxpar")
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "nxpar"


def journal_path(service: str, session: str, redis_url: str = "", root: Path | None = None) -> Path:
    """One file per (service, session, Redis); names quoted so that any name is one path component."""
    redis_tag = hashlib.sha1(redis_url.encode()).hexdigest()[:10] if redis_url else "any"
    return (root or state_dir()) / quote(service or "_", safe="@") / f"{quote(session, safe='')}.{redis_tag}.journal.json"


def service_name(instance: str) -> str:
    """`<instance>@<tango host>`: two services of the same instance name on other Tango databases differ."""
    return f"{instance or '_'}@{os.environ.get('TANGO_HOST', 'no-tango')}"


@dataclass
class JournalEntry:
    """A scan in flight: discovered (no file yet), or writing `filename` (its `entries`)."""

    key: str
    name: str
    filename: str = ""
    entries: list[str] = field(default_factory=list)
    since: float = field(default_factory=time.time)  # when this run took it up
    host: str = field(default_factory=socket.gethostname)
    resumes: int = 0  # how many restarted runs took it up again (a scan that kills the job is given up)

    @classmethod
    def from_json(cls, key: str, item: Any) -> "JournalEntry | None":
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        names = {f.name for f in dataclasses.fields(cls)} - {"key"}
        return cls(key, **{k: v for k, v in item.items() if k in names})


class Journal:
    DISCOVERY = "_discovery_since"  # the timetag after which discovery goes on (not a scan key)

    def __init__(self, session: str, service: str = "", redis_url: str = "", root: Path | None = None) -> None:
        self.path = journal_path(service, session, redis_url, root)
        self.redis_url = redis_url
        self._lock = threading.Lock()
        self._warned = ""

    # -- the scans in flight ----------------------------------------------------------------------
    def discovered(self, key: str, name: str, resumes: int = 0) -> None:
        with self._lock:
            data = self._load()
            data[key] = dataclasses.asdict(JournalEntry(key, name, resumes=resumes))
            self._save(data, durable=True)

    def opened(self, key: str, name: str, filename: str, entries: list[str]) -> None:
        with self._lock:
            data = self._load()
            old = JournalEntry.from_json(key, data.get(key)) or JournalEntry(key, name)
            data[key] = dataclasses.asdict(dataclasses.replace(old, filename=filename, entries=list(entries)))
            self._save(data, durable=True)

    def remove(self, key: str) -> None:
        with self._lock:
            data = self._load()
            if data.pop(key, None) is not None:
                self._save(data)

    def pending(self) -> list[JournalEntry]:
        """The scans a previous run left unfinished, oldest first (they stay until removed)."""
        with self._lock:
            data = self._load()
        entries = [JournalEntry.from_json(k, v) for k, v in data.items() if k != self.DISCOVERY]
        return sorted((e for e in entries if e is not None), key=lambda e: e.since)

    # -- discovery position -------------------------------------------------------------------------
    def save_since(self, timetag: str) -> None:
        with self._lock:
            data = self._load()
            data[self.DISCOVERY] = {"timetag": timetag, "redis": self.redis_url}
            self._save(data)

    def load_since(self) -> str | None:
        """Where the last run's discovery got to (None: never recorded)."""
        with self._lock:
            item = self._load().get(self.DISCOVERY)
        return item.get("timetag") if isinstance(item, dict) and isinstance(item.get("timetag"), str) else None

    # -- the file ---------------------------------------------------------------------------------------
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
                   "service could not resume the ones this run leaves unfinished")
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

    def _save(self, entries: dict[str, Any], durable: bool = False) -> None:
        """durable: fsynced (a scan taken up must survive a host crash); forgetting one need not be (it
        is at worst written again from Redis)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp_path()
            with open(tmp, "w") as fh:
                fh.write(json.dumps(entries))
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            self._warn(e)


class InterruptedScan:
    """A `ScanStatus` (states.py) of a scan a previous run was writing that could not be resumed:
    always FAULT with the reason, never alive."""

    plan = None
    bytes_written = 0
    warning = ""
    interrupted = True

    def __init__(self, key: str, name: str, filename: str, entries: list[str], reason: str) -> None:
        self.key, self.name, self.filename = key, name, filename
        self.state, self.reason = State.FAULT, reason
        self.created = self.start_time = self.end_time = time.time()
        self.urls = [f"{filename}::/{e}" for e in entries] if filename else []

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass

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
