"""RANK 0 ONLY: the run marker, which tells a restarted service how the previous run ended, under any
supervisor (supervisord, systemd, SLURM, a person).

`<state dir>/<instance>@<tango host>.run.json` (state dir and name as the journal's, nxpar/driver/journal.py)
holds the current run: {pid, host, started, clean, stop_reason}. At start rank 0 reads the previous run's
marker: if that run did not end cleanly (kill -9 of any rank, node loss, the job stopped by its own
watchdog), the restart reason goes into `NXPAR_RESTART_REASON` before the devices start: the devices show
it in their Status and the resumed scans carry it (nxpar/driver/session.py). Then rank 0 writes its own
marker (clean: false); after a clean stop (the Tango server returned, e.g. on SIGTERM or SIGINT, and the
writer ranks were dismissed) clean: true. `record_stop_reason` is for rank 0 stopping the job on purpose
(MPI_Abort): the next run names that reason. Nothing here ever raises: an unwritable state directory is
a warning.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..driver.journal import service_name, state_dir

log = logging.getLogger("nxpar.run_marker")

RESTART_REASON_ENV = "NXPAR_RESTART_REASON"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def marker_path(instance: str, root: Path | None = None) -> Path:
    """`<state dir>/<instance>@<TANGO_HOST>.run.json`, quoted as the journal's directory is."""
    return (root or state_dir()) / f"{quote(service_name(instance), safe='@')}.run.json"


@dataclass
class RunRecord:
    """One run of the service, as rank 0 records it."""

    pid: int
    host: str
    started: str
    clean: bool = False
    stop_reason: str = ""  # why rank 0 stopped the job itself (watchdog, broken channel), if it did

    @classmethod
    def from_json(cls, item: Any) -> "RunRecord | None":
        if not isinstance(item, dict):
            return None
        try:
            return cls(int(item["pid"]), str(item["host"]), str(item["started"]), bool(item.get("clean", False)),
                       str(item.get("stop_reason", "")))
        except (KeyError, TypeError, ValueError):
            return None

    def restart_reason(self, now: str) -> str:
        """'' after a clean end, else what the restarted run says about this one."""
        if self.clean:
            return ""
        reason = (f"restarted at {now}: the previous run (pid {self.pid} on host {self.host}, started "
                  f"{self.started}) ended without a clean shutdown")
        return reason + (f"; it stopped itself: {self.stop_reason}" if self.stop_reason else "")


class RunMarker:
    """This run's marker. `start()` once, before the devices; `stopped_cleanly()` at a clean end."""

    def __init__(self, instance: str, root: Path | None = None) -> None:
        self.path = marker_path(instance, root)
        self.record = RunRecord(os.getpid(), socket.gethostname(), time.strftime(TIME_FORMAT))
        self.previous: RunRecord | None = None

    def start(self) -> str:
        """Read the previous run's marker, put its restart reason (if any) into NXPAR_RESTART_REASON (after
        the reason its launcher gave there, if any), record this run as not ended cleanly. Returns the
        restart reason ('' after a clean end)."""
        self.previous = self._load()
        reason = self.previous.restart_reason(self.record.started) if self.previous else ""
        if reason:
            given = os.environ.get(RESTART_REASON_ENV, "")
            os.environ[RESTART_REASON_ENV] = f"{given}; {reason}" if given else reason
            log.warning("%s", reason)
        self._save()
        return reason

    def record_stop_reason(self, reason: str) -> None:
        """Rank 0 is about to stop the job itself (MPI_Abort): the next run will name `reason`."""
        self.record.stop_reason = reason
        self._save()

    def stopped_cleanly(self) -> None:
        self.record.clean = True
        self._save()

    def _load(self) -> RunRecord | None:
        try:
            return RunRecord.from_json(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("run marker %s unreadable (%s): the previous run's end is unknown", self.path, e)
            return None

    def _save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{self.record.host}.{self.record.pid}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as fh:
                fh.write(json.dumps(dataclasses.asdict(self.record)))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("run marker %s cannot be written (%s): a restart will not say how this run ended",
                        self.path, e)
