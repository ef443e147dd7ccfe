"""RANK 0 ONLY: the states of the session subscriber and of the scan writers, as Tango shows them
(docs/interface.md), and what the Tango layer reads from a scan writer (`ScanStatus`)."""
from __future__ import annotations

import enum
from typing import Protocol


class State(str, enum.Enum):
    INIT = "INIT"  # created, not started
    ON = "ON"  # running (a session: subscribed; a scan: waiting for data, writing, finalising)
    RUNNING = "RUNNING"  # a session with at least one live scan writer (derived, never stored)
    OFF = "OFF"  # done: a session stopped, a scan's file complete and closed
    FAULT = "FAULT"  # failed; the reason says why


REASON_RUNNING = "Subscribed to Redis"  # the same text for a session and a scan (blisswriter's)
REASON_DONE = "Finished succesfully"  # sic: BLISS users know this string


class ScanStatus(Protocol):
    """A scan as the device reports it: a live `ScanDriver` or an `InterruptedScan` (journal.py)."""

    name: str
    state: State
    reason: str
    created: float
    start_time: float | None
    end_time: float | None
    bytes_written: int
    warning: str
    interrupted: bool  # written by a previous run of the service that died

    @property
    def filename(self) -> str | None: ...
    @property
    def urls(self) -> list[str]: ...
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...
    def stop(self, timeout: float | None = None) -> None: ...
    def kill(self) -> None: ...
    def progress(self) -> dict[str, dict[str, int]]: ...
    def backlog(self) -> int: ...
    def published(self) -> int: ...
