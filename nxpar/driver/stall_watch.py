"""RANK 0 ONLY: a watchdog over the writer ranks. A step that gets no answer for `warn_s` is a warning
(log, each live scan's state info, the device Status) naming how far each writer rank got; past
`restart_s` the watchdog stops the MPI job, so that the supervisor restarts it and the restarted service
resumes the scans from Redis (driver/resume.py). It runs in its own thread, so a writer channel stuck
in a call (a hung file system with one process, an MPI call that never returns) is seen too.

Limits: `NexusWriterService --stall-warning S --stall-restart S` (env NXPAR_STALL_WARNING_S,
NXPAR_STALL_RESTART_S); 0 switches a limit off.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..protocol import steps as st

log = logging.getLogger("nxpar.channel")

DEFAULT_WARN_S = 20.0
DEFAULT_RESTART_S = 300.0


@dataclass(frozen=True)
class StallLimits:
    warn_s: float = DEFAULT_WARN_S  # no answer for this long: a warning
    restart_s: float = DEFAULT_RESTART_S  # no answer for this long: the job is stopped (restarted by its supervisor)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "StallLimits":
        env = os.environ if environ is None else environ
        return cls(_seconds(env, "NXPAR_STALL_WARNING_S", DEFAULT_WARN_S),
                   _seconds(env, "NXPAR_STALL_RESTART_S", DEFAULT_RESTART_S))


def _seconds(env, name: str, default: float) -> float:
    try:
        value = float(env.get(name, default))
    except ValueError:
        log.warning("%s=%r is not a number of seconds: %g used", name, env.get(name), default)
        return default
    return max(value, 0.0)


@dataclass
class _Pending:
    seq: int
    what: str  # "WriteBatch of scan <key>"


@dataclass
class _RankMark:
    seq: int
    kind: st.MarkKind
    when: float
    error: str = ""


@dataclass
class StallWatch:
    """Told of every step sent and answered (and of the writer ranks' progress marks) by the channel."""

    limits: StallLimits
    on_restart: Callable[[str], None]  # stops the job (the channel's abort)
    period_s: float = 1.0
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _marks: dict[int, _RankMark] = field(default_factory=dict)
    _silent_since: float = 0.0
    _warning: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        if self.limits.warn_s or self.limits.restart_s:
            threading.Thread(target=self._run, name="nxpar-stall-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    # -- what the channel tells -------------------------------------------------------------------
    def sent(self, seq: int, step: object) -> None:
        with self._lock:
            if not self._pending:
                self._silent_since = time.monotonic()
            scan = getattr(step, "scan_id", "") or getattr(step, "path", "")
            self._pending[seq] = _Pending(seq, f"{type(step).__name__}{f' of {scan}' if scan else ''}")

    def answered(self, seq: int) -> None:
        with self._lock:
            self._pending.pop(seq, None)
            self._silent_since = time.monotonic()
            if self._warning:
                log.warning("writer ranks answer again (step #%d)", seq)
            self._warning = ""

    def mark(self, mark: st.ProgressMark) -> None:
        with self._lock:
            self._marks[mark.rank] = _RankMark(mark.seq, st.MarkKind(mark.kind), time.monotonic(), mark.error)

    def warning(self) -> str:
        """'' or why the writers look stalled (shown while it lasts)."""
        return self._warning

    # -- the watchdog -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            silent = self._silent_for()
            if silent is None:
                continue
            if self.limits.restart_s and silent >= self.limits.restart_s:
                text = self._describe(silent)
                log.critical("%s: stopping the MPI job so that its supervisor restarts it "
                             "(the scans are resumed from Redis)", text)
                self.on_restart(text)
                return
            if self.limits.warn_s and silent >= self.limits.warn_s:
                text = self._describe(silent)
                if not self._warning:
                    log.warning("%s", text)
                self._warning = text

    def _silent_for(self) -> float | None:
        with self._lock:
            return time.monotonic() - self._silent_since if self._pending else None

    def _describe(self, silent: float) -> str:
        with self._lock:
            oldest = min(self._pending.values(), key=lambda p: p.seq)
            now = time.monotonic()
            ranks = "; ".join(f"rank {r}: {m.kind.value} #{m.seq} {now - m.when:.0f} s ago"
                              f"{f' ({m.error})' if m.error else ''}" for r, m in sorted(self._marks.items()))
        return (f"writer ranks stalled: no answer for {silent:.0f} s to step #{oldest.seq} ({oldest.what})"
                f"{f'; {ranks}' if ranks else ''}")
