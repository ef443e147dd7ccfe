"""RANK 0 ONLY: the text lines of the device's scan attributes (scan_info, scan_progress, …),
formatted as blisswriter does, from what each scan writer reports (`ScanStatus`), and the devices' Status."""
from __future__ import annotations

import datetime
import time
from typing import Sequence

from ..driver.session import SessionSubscriber
from ..driver.states import REASON_RUNNING, ScanStatus


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


def writing_text(writers: Sequence[ScanStatus]) -> str:
    """'2 scans being written (3_ascan, 4_ascan)' or 'no scan being written'."""
    live = [w.name for w in writers if w.is_alive()]
    if not live:
        return "no scan being written"
    shown = ", ".join(live[:3]) + (", …" if len(live) > 3 else "")
    return f"{len(live)} scan{'s' if len(live) > 1 else ''} being written ({shown})"


def with_warnings(text: str, warnings: Sequence[str]) -> str:
    return text + "".join(f"; WARNING: {w}" for w in warnings if w)


def session_status(sub: SessionSubscriber, property_warnings: Sequence[str]) -> str:
    """A NexusWriter device's Status: the session's reason ("Subscribed to Redis", blisswriter's words, then
    which Redis and what is being written; or why it is FAULT), a restart notice, stalled writer ranks,
    properties replaced by their default."""
    text = sub.reason
    if sub.reason == REASON_RUNNING:
        text += f" {sub.url}: {writing_text(sub.sorted_writers())}"
    if sub.notice:
        text += f" ({sub.notice})"
    return with_warnings(text, [sub.channel.stall_warning(), *property_warnings])
