"""RANK 0 ONLY: what the log says of each scan, for the people running the service.

At INFO: one line when the scan's file is opened (name, file, session, writer ranks); a progress line every
`PROGRESS_PERIOD_S` while it is written (rows written and published, MB, MB/s over the period); one line at
its end (state, rows, MB, MB/s, time, file) — a FAULT at WARNING, with its reason. At DEBUG also the streams
when the file is opened, each stream's rows with every progress line, and the phases of the end.

The scan driver calls `opened` and `ended`; one thread, started with the first scan, writes the progress
lines of every scan being written. Only reads what the driver reports (as the device's attributes do).
"""
from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from .states import State

log = logging.getLogger("nxpar.scan")

PROGRESS_PERIOD_S = float(os.environ.get("NXPAR_PROGRESS_PERIOD_S", "30"))
MB = 1024**2  # as the device's scan_info attribute counts


@dataclass
class _Report:
    """A scan being written: when its file was opened, and where the last progress line left it."""

    driver: Any  # a ScanDriver (scan_driver.py imports this module)
    opened: float  # monotonic
    last_time: float
    last_bytes: int = 0


_LIVE: dict[int, _Report] = {}
_LOCK = threading.Lock()
_THREAD: list[threading.Thread] = []  # the progress thread, once started


def opened(driver: Any) -> None:
    """The scan's file is open: its start line; from now on its progress lines."""
    plan = driver.plan
    writers = driver.channel.nwriters
    session = driver.source.info.get("session_name") if isinstance(driver.source.info, dict) else None
    log.info("scan %s: writing %s (session %s, %d writer rank%s)", driver.name, plan.filename, session, writers,
             "" if writers == 1 else "s")
    if log.isEnabledFor(logging.DEBUG):
        log.debug("scan %s: key %s, entries %s, files %s", driver.name, driver.key, ", ".join(plan.entry_names),
                  ", ".join(driver.urls))
    now = time.monotonic()
    with _LOCK:
        _LIVE[id(driver)] = _Report(driver, now, now)
        if not _THREAD:
            _THREAD.append(threading.Thread(target=_progress_loop, name="scan-progress", daemon=True))
            _THREAD[0].start()


def ended(driver: Any) -> None:
    """The scan's end line (its state, reason and counts are final)."""
    with _LOCK:
        report = _LIVE.pop(id(driver), None)
    if driver.plan is None and driver.state == State.OFF:
        return  # not to be saved: the driver said so when it saw it
    elapsed = (driver.end_time or time.time()) - (driver.start_time or driver.created)
    written, published = rows_of(driver)
    mb = driver.bytes_written / MB
    writing_s = time.monotonic() - report.opened if report is not None else elapsed
    where = driver.filename or "no file"
    if driver.state == State.OFF:
        log.info("scan %s: OFF in %.1f s: %d rows, %s MB at %s MB/s (%s)", driver.name, elapsed, written, number(mb),
                 number(mb / writing_s if writing_s > 0 else 0.0), where)
    else:
        log.warning("scan %s: %s after %.1f s: %d of %d rows, %s MB written (%s): %s", driver.name,
                    State(driver.state).value, elapsed, written, published, number(mb), where, driver.reason)
    phases = timeline_text(driver.timeline)
    if phases:
        after_end = after_end_text(driver.timeline, _end_time(driver))
        log.debug("scan %s: phases from PREPARED: %s%s", driver.name, phases,
                  f"; from the scan's end_time: {after_end}" if after_end else "")


def number(value: float) -> str:
    """MB and MB/s: one decimal from 1 on, two significant digits below (0.034, not 0.0)."""
    return f"{value:.1f}" if value >= 1 or value == 0 else f"{value:.2g}"


def rows_of(driver: Any) -> tuple[int, int]:
    """(rows written in every data stream, rows published in the fullest one)."""
    counts = [n for entry in driver.progress().values() for n in entry.values()]
    return (min(counts) if counts else 0), driver.published()


def timeline_text(timeline: dict[str, float]) -> str:
    """When each phase ended, from PREPARED: where the time between scan end and file closed goes."""
    t0 = timeline.get("prepared")
    return "" if t0 is None else phases_since(timeline, t0, digits=2)


def after_end_text(timeline: dict[str, float], end_time: float | None) -> str:
    """When each phase ended, from the scan's end_time (scan_info, the publisher's
    clock: BLISS writes it as the scan ends): the writer's tail as BLISS sees it."""
    return "" if end_time is None else phases_since(timeline, end_time, digits=3)


def phases_since(timeline: dict[str, float], t0: float, digits: int) -> str:
    return ", ".join(f"{event} {t - t0:+.{digits}f}s" for event, t in timeline.items() if event != "prepared")


def _end_time(driver: Any) -> float | None:
    try:
        iso = driver.source.final_info().get("end_time")
        return datetime.datetime.fromisoformat(iso).timestamp() if iso else None
    except Exception:  # a log line: never a reason to fail
        return None


def progress(report: _Report, now: float) -> None:
    """One progress line of a scan (and at DEBUG each stream's rows)."""
    driver = report.driver
    written, published = rows_of(driver)
    nbytes = driver.bytes_written
    rate = (nbytes - report.last_bytes) / MB / max(now - report.last_time, 1e-9)
    log.info("scan %s: %d rows written, %d published, %s MB, %s MB/s over the last %.0f s", driver.name,
             written, published, number(nbytes / MB), number(rate), now - report.last_time)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("scan %s streams: %s", driver.name, ", ".join(
            f"{p.name} {p.written}/{p.available}{' sealed' if p.sealed else ''}" for p in driver.streams.values()))
    report.last_time, report.last_bytes = now, nbytes


def _progress_loop() -> None:
    """Every scan being written gets a progress line each PROGRESS_PERIOD_S from its file's opening."""
    while True:
        time.sleep(min(PROGRESS_PERIOD_S, 1.0))
        now = time.monotonic()
        with _LOCK:
            due = [r for r in _LIVE.values() if now - r.last_time >= PROGRESS_PERIOD_S]
        for report in due:
            try:
                progress(report, now)
            except RuntimeError:  # a stream added while counted: the next period tells
                continue
