"""When the writer is done with each scan, as BLISS could learn it: a thread that polls the device's
`scan_states_info` (one read: every scan's name and state, spec §2.5) every POLL_S seconds and keeps,
per scan name, when it was first seen and when it was first seen OFF or FAULT (time.time(), the clock
BLISS's scan_info end_time is written with, on the same host). Works the same for nxpar and the
reference. A scan first seen already finished is flagged (`seen_running` False): its done time is
then an upper bound (the name must be new to the device: the comparison numbers its scans from 1001).
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

POLL_S = 0.01
LINE = re.compile(r"^\s*(\S+):\s+([A-Z]+)\b")
FINISHED = ("OFF", "FAULT")


@dataclass
class ScanClock:
    """What the poller saw of one scan."""

    first_seen: float
    seen_running: bool
    done: float | None = None
    state: str = ""


class WriterClock:
    """Polls `devname` in a thread of its own (its own DeviceProxy) between start() and stop()."""

    def __init__(self, devname: str, poll_s: float = POLL_S) -> None:
        self.devname, self.poll_s = devname, poll_s
        self.scans: dict[str, ScanClock] = {}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer-clock", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> "WriterClock":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import tango

        proxy = tango.DeviceProxy(self.devname)
        proxy.set_timeout_millis(3000)
        while not self._stop.is_set():
            try:
                lines = proxy.read_attribute("scan_states_info").value or ()
            except tango.DevFailed:  # the device restarting: try again
                lines = ()
            now = time.time()
            self._record(lines, now)
            self.polls += 1
            self._stop.wait(self.poll_s)

    def _record(self, lines, now: float) -> None:
        with self._lock:
            for line in lines:
                m = LINE.match(line)
                if not m:
                    continue
                name, state = m.groups()
                clock = self.scans.get(name)
                if clock is None:
                    clock = self.scans[name] = ScanClock(now, seen_running=state not in FINISHED)
                if clock.done is None and state in FINISHED:
                    clock.done, clock.state = now, state

    def wait_done(self, names: list[str], timeout: float) -> dict[str, ScanClock | None]:
        """Wait until every scan of `names` is finished (or `timeout`); None for a scan never seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(n in self.scans and self.scans[n].done is not None for n in names):
                    break
            time.sleep(self.poll_s)
        with self._lock:
            return {n: self.scans.get(n) for n in names}
