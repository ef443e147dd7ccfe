"""RANK 0 ONLY: what a claim of driver/claims.py says and what is decided from it, without Redis: the
value (`Holder`: who holds it, from where, with which TTL), the take-over rule (`may_take_over`: only
the same writer's dead predecessor, at once), and `ClaimedElsewhere`, the `ScanStatus` a writer shows
for a scan another writer owns."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

from .states import State

CLAIM_TTL_S = 10.0  # a dead owner's scans wait this long for another writer (its own restart: not at all)
REFRESH_PERIOD_S = 2.0  # 5 tries before the TTL ends; measured: tests/test_claims.py, test_one_writer_per_scan.py


def pid_alive(pid: int) -> bool:
    """A process of that pid runs on this host; a zombie (dead, not yet reaped by its parent, e.g. a rank
    of an MPI job torn down while its proxy lingers) does not."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        pass
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


@dataclass(frozen=True)
class Holder:
    """The value of a claim: who holds it (a scan claim: '<route> of <service>'; a file claim: the
    service), from where, since when, and the TTL it keeps."""

    writer: str
    host: str = ""
    pid: int = 0
    since: float = 0.0
    ttl_s: float = CLAIM_TTL_S
    refresh_s: float = REFRESH_PERIOD_S

    def value(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, raw: bytes | str) -> "Holder":
        try:
            item = json.loads(raw)
            return cls(**{f.name: item[f.name] for f in dataclasses.fields(cls) if f.name in item})
        except (ValueError, TypeError, KeyError):  # not an nxpar value: never taken over
            return cls(writer=raw.decode(errors="replace") if isinstance(raw, bytes) else raw)

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.since)) if self.since else "?"
        return f"{self.writer} (pid {self.pid} on {self.host or '?'}, since {when})"

    def fresh(self, ttl_left_s: float) -> bool:
        """Refreshed within its last two refresh periods (a live owner always is)."""
        return ttl_left_s > self.ttl_s - 2 * self.refresh_s

    def same_process(self, other: "Holder") -> bool:
        return (self.host, self.pid) == (other.host, other.pid)


def may_take_over(holder: Holder, me: Holder, ttl_left_s: float, alive: Callable[[int], bool] = pid_alive) -> bool:
    """Only the same writer takes a claim before it expires: its dead predecessor's (restart), never a
    live sibling's (e.g. two batch runs); another writer waits for the TTL."""
    if holder.writer != me.writer:
        return False
    if holder.same_process(me):
        return True  # not held by this process (claims._HELD): a dead predecessor that had our pid
    if holder.host == me.host and not alive(holder.pid):
        return True
    return not holder.fresh(ttl_left_s)


@dataclass(frozen=True)
class Refusal:
    """Why a writer does not take a scan: `holder` holds its claim, or (`filename` set) the claim of its
    file, which a second MPI job must never open while another one writes it."""

    holder: Holder
    filename: str = ""

    def describe(self) -> str:
        if self.filename:
            return f"left to {self.holder.describe()}, which is writing its file {self.filename}"
        return f"written by {self.holder.describe()}"


class ClaimedElsewhere:
    """A `ScanStatus` (states.py) of a scan another writer owns: ON while that writer's process holds the
    scan's or its file's claim, then OFF; never alive here, nothing journaled, no file touched."""

    interrupted, plan, filename, bytes_written, warning = False, None, None, 0, ""
    urls: list[str] = []

    def __init__(self, key: str, name: str, refusal: Refusal, lookup: Callable[[], list]) -> None:
        """lookup(): the raw values of the scan's and its file's claims now (no retries: Tango asks)."""
        self.key, self.name, self.refusal, self._lookup = key, name, refusal, lookup
        self.created = self.start_time = time.time()
        self._ended: float | None = None
        self._checked = 0.0

    def _claim_ended(self) -> bool:
        """Neither claim names the owner's process any more; Redis asked at most once a second."""
        if self._ended is None and time.monotonic() - self._checked >= 1.0:
            self._checked = time.monotonic()
            try:
                values = self._lookup()
            except Exception:  # Redis unreachable: still ON
                return False
            if not any(raw is not None and Holder.parse(raw).same_process(self.refusal.holder) for raw in values):
                self._ended = time.time()
        return self._ended is not None

    @property
    def state(self) -> State:
        return State.OFF if self._claim_ended() else State.ON

    @property
    def reason(self) -> str:
        ended = "; its claim has ended" if self._claim_ended() else ""
        return f"not written by this writer: {self.refusal.describe()}{ended}"

    @property
    def end_time(self) -> float | None:
        self._claim_ended()
        return self._ended

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass

    def stop(self, timeout: float | None = None, resumable: bool = False) -> None:
        """Nothing to stop or kill here: the owner writes the scan."""

    kill = stop

    def progress(self) -> dict[str, dict[str, int]]:
        return {}

    def backlog(self) -> int:
        return 0

    published = backlog
