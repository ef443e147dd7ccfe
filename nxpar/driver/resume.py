"""RANK 0 ONLY: scans a previous run left unfinished, written again from Redis after a restart.

For every scan in the journal (driver/journal.py) the restarted service decides:

* Redis still holds the scan from its first row on: a new `ScanDriver` writes it again, to the end,
  replacing the entries the previous run left (damaged or partial; earlier scans in the same file are
  never touched), and notes the interruption in each entry's writer group. The scan ends OFF with a
  warning: the same data as an uninterrupted run.
* Redis no longer holds the scan, or lost the first rows of a stream (expired, trimmed, Redis
  restarted without persistence): what the previous run wrote stays, the entries are marked FAILED with
  end_time and a reason naming what is missing; the scan is FAULT.
* The job died MAX_RESUMES times while writing the scan: the same, a scan that kills the job is not
  taken up forever.

Rewriting rather than continuing: after kill -9 the file holds what HDF5 had flushed, not what the
journal last saw, and an entry may be half-created; rebuilding it from Redis is the one way to end
with exactly the published data (measured cost: README "Reliability").
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from blissdata.exceptions import ScanLoadError, ScanNotFoundError

from ..nexus.scan_info import now_iso
from ..protocol import steps as st
from .journal import InterruptedScan, Journal, JournalEntry
from .states import ScanStatus
from .writer_channel import StepError, WriterChannel

log = logging.getLogger("nxpar.resume")

MAX_RESUMES = 3


@dataclass(frozen=True)
class Interruption:
    """Why a scan is written again, for its entries' writer group and the device's warning."""

    why: str  # what stopped the previous run (the restart reason)
    detected: float  # when the restarted service took the scan up again (epoch)
    previous_entries: tuple[str, ...]  # entries the previous run had created (replaced)
    attempt: int  # 1 for the first resume

    def describe(self, rows_written: int) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.detected))
        replaced = f"entries {', '.join(self.previous_entries)} replaced" if self.previous_entries else "no entry yet"
        return (f"interrupted ({self.why}); taken up again at {when} (resume {self.attempt}): {replaced}, "
                f"every stream written again from Redis ({rows_written} rows)")

    def warning(self) -> str:
        return f"written again from Redis after an interruption ({self.why})"


def gone_reason(entry: JournalEntry, what: str) -> str:
    kept = "the file holds the rows written before the interruption" if entry.filename else "no file was written"
    return f"interrupted and not resumed: {what}; {kept}"


class Resumer:
    """Takes up the journal's scans once Redis is reachable (one per session or requested-scans route)."""

    def __init__(self, journal: Journal, channel: WriterChannel, why: str,
                 load_scan: Callable[[str], Any], start_driver: Callable[[Any, Interruption], ScanStatus],
                 missing_rows: Callable[[Any], str]) -> None:
        """load_scan(key) → a blissdata Scan; start_driver(scan, interruption) → a started ScanDriver;
        missing_rows(scan) → '' or which stream's first rows Redis no longer holds."""
        self.journal, self.channel, self.why = journal, channel, why
        self.load_scan, self.start_driver, self.missing_rows = load_scan, start_driver, missing_rows

    def resume_all(self) -> list[ScanStatus]:
        self.journal.check()  # an unusable state directory is a warning, not a FAULT
        return [self.resume(entry) for entry in self.journal.pending()]

    def resume(self, entry: JournalEntry) -> ScanStatus:
        if entry.resumes >= MAX_RESUMES:
            return self.give_up(entry, f"the writer service stopped {entry.resumes + 1} times while writing it "
                                       f"({self.why})")
        try:
            scan = self.load_scan(entry.key)
        except (ScanNotFoundError, ScanLoadError) as e:
            return self.give_up(entry, f"the scan is no longer in Redis ({type(e).__name__}: expired, deleted, or "
                                       "Redis restarted without persistence)")
        missing = self.missing_rows(scan)
        if missing:
            return self.give_up(entry, f"{missing} no longer in Redis")
        interruption = Interruption(self.why, time.time(), tuple(entry.entries), entry.resumes + 1)
        self.journal.discovered(entry.key, entry.name, resumes=entry.resumes + 1)
        log.warning("scan %s: %s; writing it again from Redis", entry.name, self.why)
        return self.start_driver(scan, interruption)

    def give_up(self, entry: JournalEntry, what: str) -> InterruptedScan:
        reason = gone_reason(entry, what)
        if entry.filename:
            try:
                self.channel.call(st.MarkFailed(entry.filename, entry.entries, reason, now_iso()))
            except StepError as e:
                reason += f" (could not mark the file: {e})"
        log.error("scan %s: %s", entry.name, reason)
        self.journal.remove(entry.key)
        return InterruptedScan(entry.key, entry.name, entry.filename, entry.entries, reason)
