"""RANK 0 ONLY: the text lines of the device's scan attributes (scan_info, scan_progress, …),
formatted as blisswriter does, from what each scan writer reports (`ScanStatus`)."""
from __future__ import annotations

import datetime
import time

from ..driver.states import ScanStatus


def align_columns(rows: list[list[str]]) -> list[str]:
    """blisswriter's align_listofstrings: right-align all columns but the last."""
    if not rows:
        return []
    if len(rows) == 1:
        return [" ".join(rows[0])]
    ncols = max(map(len, rows))
    rows = [r + [""] * (ncols - len(r)) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(ncols)]
    return [" ".join([c.rjust(w) for c, w in zip(r[:-1], widths[:-1])] + [r[-1].ljust(widths[-1])]) for r in rows]


def _fmt(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def start_text(w: ScanStatus) -> str:
    if w.interrupted:
        return "interrupted"
    return _fmt(w.start_time) if w.start_time else "not started"


def end_text(w: ScanStatus) -> str:
    if w.interrupted:
        return "interrupted"
    return _fmt(w.end_time) if w.end_time else "not finished"


def duration(w: ScanStatus) -> datetime.timedelta:
    if not w.start_time or w.interrupted:
        return datetime.timedelta(0)
    return datetime.timedelta(seconds=round((w.end_time or time.time()) - w.start_time))


def progress_lines(writers: list[ScanStatus]) -> list[str]:
    """`NAME: <min>pts-<max>pts` per scan (per entry when a scan has several), plus what was
    published when the writers are behind."""
    rows = []
    for w in writers:
        per_entry = w.progress()
        for entry, counts in sorted(per_entry.items()):
            label = f"{w.name}:" if len(per_entry) == 1 else f"{w.name}:{entry}:"
            values = list(counts.values()) or [0]
            row = [label, f"{min(values)}pts-{max(values)}pts"]
            if w.is_alive() and w.backlog() > 0:
                row[-1] += f" (published {w.published()}pts)"
            plugins = getattr(w, "plugins", None)
            if plugins is not None and plugins.warning:  # Lima2 / Mosca channels not fully written
                row[-1] += f" WARNING: {plugins.warning}"
            rows.append(row)
    return align_columns(rows)


def info_lines(writers: list[ScanStatus]) -> list[str]:
    rows = []
    for w in writers:
        counts = [c for e in w.progress().values() for c in e.values()] or [0]
        rows.append([f"{w.name}:", w.state.value, f"{min(counts)}pts-{max(counts)}pts",
                     f"{w.bytes_written / 1024**2:.1f}MB", f"duration: {duration(w)}",
                     f"start: {start_text(w)}", f"end: {end_text(w)}" +
                     (f" WARNING: {w.warning}" if w.warning else "")])
    return align_columns(rows)


def column_lines(writers: list[ScanStatus], value) -> list[str]:
    """`NAME: <value(w)>` per scan, aligned."""
    return align_columns([[f"{w.name}:", value(w)] for w in writers])
