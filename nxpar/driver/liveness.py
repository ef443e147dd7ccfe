"""RANK 0 ONLY: is a scan still alive? A scan whose state and streams have not changed for
`stale_scan_timeout` seconds is given up: its publisher is gone (BLISS killed, a crashed session), and
the scan driver finalises it FAILED with end_time and the reason, releasing its thread and files.

A scan sequence gets no event of its own while a child scan runs (for hours, maybe): it is judged by the
activity of the session's other scans too.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


class StaleScan(RuntimeError):
    """Nothing changed in the scan for longer than the stale-scan timeout."""


@dataclass
class Liveness:
    timeout_s: float  # 0: never stale
    elsewhere: Callable[[], float] = lambda: 0.0  # monotonic time of the session's last activity in other scans
    last_change: float = field(default_factory=time.monotonic)
    _seen: Any = None

    def see(self, fingerprint: Any) -> None:
        """What the scan looks like now (its state, its streams' lengths): a change is activity."""
        if fingerprint != self._seen:
            self._seen, self.last_change = fingerprint, time.monotonic()

    def check(self, judged_by_children: bool = False) -> None:
        if not self.timeout_s:
            return
        last = max(self.last_change, self.elsewhere()) if judged_by_children else self.last_change
        idle = time.monotonic() - last
        if idle > self.timeout_s:
            raise StaleScan(f"no change in the scan's state or data for {idle:.0f} s (stale_scan_timeout "
                            f"{self.timeout_s:g} s): its publisher is gone; finalised FAILED")
