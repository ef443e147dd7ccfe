"""RANK 0 ONLY: the session subscriber — discovers a BLISS session's scans in Redis.

One thread per device/session: every scan of the session created after start() gets a ScanDriver.
States: INIT, ON, OFF, FAULT (RUNNING is derived: ON with at least one live scan writer). A
malformed scan never faults the session: its writer FAULTs instead.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from blissdata.exceptions import NoScanAvailable, ScanLoadError, ScanNotFoundError
from blissdata.redis_engine.store import DataStore

from ..protocol.options import SaveOptions, Tuning
from ..sources.blissdata_raw import blissdata_version
from ..util.retry import call_with_backoff
from .journal import Journal, recover_interrupted
from .profiling import log_resources
from .scan_driver import ScanDriver
from .scan_source import ScanSource
from .states import REASON_DONE, REASON_RUNNING, ScanStatus, State
from .writer_channel import WriterChannel

log = logging.getLogger("nxpar.session")

REDIS_GIVE_UP_S = 20.0  # discovery: Redis unreachable this long → session FAULT
BEACON_GIVE_UP_S = 20.0
DEFAULT_PURGE_DELAY_S = 300.0


class _Stopping(Exception):
    """stop() was called while Redis was being retried."""


def redis_url_for_session() -> str:
    """REDIS_DATA_URL, else ask Beacon (BEACON_HOST) like blisswriter does."""
    url = os.environ.get("REDIS_DATA_URL")
    if url:
        return url
    if not os.environ.get("BEACON_HOST"):
        raise RuntimeError("No Redis URL: set REDIS_DATA_URL or BEACON_HOST")
    from blissdata.beacon.data import BeaconData

    return call_with_backoff(lambda: BeaconData().get_redis_data_db(), "Redis URL", BEACON_GIVE_UP_S,
                             errors=(ConnectionRefusedError,), service="Beacon")


class SessionSubscriber:
    def __init__(self, session: str, channel: WriterChannel, options: SaveOptions,
                 purge_delay_s: float = DEFAULT_PURGE_DELAY_S, tuning: Tuning | None = None,
                 url_provider: Callable[[], str] = redis_url_for_session, instance: str = "") -> None:
        self.session = session
        self.channel = channel
        self.options = options
        self.purge_delay_s = purge_delay_s
        self.tuning = tuning or Tuning()
        self._url_provider = url_provider
        self.state, self.reason = State.INIT, "instantiation"
        self.writers: dict[str, ScanStatus] = {}
        self.journal = Journal(session, instance)  # keyed by Tango instance and session (journal.py)
        self.notice = os.environ.get("NXPAR_RESTART_REASON", "")
        self.profiling = "OFF"  # applied to scan writers created from now on
        self._last_resource_log = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._since: str | None = None  # Redis timetag discovery starts after (see start())
        self._thread: threading.Thread | None = None
        self._blissdata_version = blissdata_version()

    # -- control -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return any(w.is_alive() for w in list(self.writers.values()))

    def tango_state(self) -> State:
        if self.state == State.ON and self.running:
            return State.RUNNING
        return self.state

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self.state, self.reason = State.INIT, "Starting"
        self._stop.clear()
        # Where discovery starts, taken now: a scan created once start() returned (e.g. right after
        # Tango Init) is never missed, however late the thread gets going.
        try:
            self._since = DataStore(self._url_provider()).get_last_scan_timetag()
        except Exception:  # Redis down or not initialised: the thread reports it (FAULT)
            self._since = None
        self._thread = threading.Thread(target=self._run, name=f"session-{self.session}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        if self.running:
            raise RuntimeError("Cannot stop session subscriber when scans are running")
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def get(self, name: str) -> ScanStatus:
        writer = self.writers.get(name)
        if writer is None:
            raise ValueError(f"No subscriber for scan '{name}' exists")
        return writer

    def purge(self, delay_s: float) -> None:
        now = time.time()
        with self._lock:
            for name, w in list(self.writers.items()):
                if not w.is_alive() and w.end_time is not None and now - w.end_time >= delay_s:
                    del self.writers[name]

    def sorted_writers(self) -> list[ScanStatus]:
        return sorted(self.writers.values(), key=lambda w: w.start_time or w.created)

    # -- the thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._recover_interrupted()
            url = self._url_provider()
            store = DataStore(url)
            since = self._since if self._since is not None else store.get_last_scan_timetag()
            self.state, self.reason = State.ON, REASON_RUNNING
            while not self._stop.is_set():
                try:
                    since, key = call_with_backoff(lambda: store.get_next_scan(since=since, timeout=1),
                                                   f"session {self.session}", REDIS_GIVE_UP_S, self._raise_if_stopping)
                except NoScanAvailable:
                    self._periodic()
                    continue
                self._new_scan(store, url, key)
                self._periodic()
        except _Stopping:
            pass
        except Exception as e:
            log.error("session %s FAULT: %s", self.session, e)
            self.state, self.reason = State.FAULT, str(e) or type(e).__name__
            return
        self.state, self.reason = State.OFF, REASON_DONE

    def _raise_if_stopping(self) -> None:
        if self._stop.is_set():
            raise _Stopping()

    def _periodic(self) -> None:
        self.purge(self.purge_delay_s)
        if self.profiling != "OFF" and time.monotonic() - self._last_resource_log >= 10:
            log_resources(log)
            self._last_resource_log = time.monotonic()

    def _recover_interrupted(self) -> None:
        """Scans a previous (dead) run was writing: FAULT, and their files marked FAILED."""
        for scan in recover_interrupted(self.journal, self.channel, self.notice or "the writer service stopped"):
            with self._lock:
                self.writers[scan.name] = scan

    def _new_scan(self, store: DataStore, url: str, key: str) -> None:
        try:
            scan = store.load_scan(key)
        except ScanNotFoundError:
            return
        except ScanLoadError as e:
            log.warning("cannot load scan %s: %s", key, e)
            return
        if scan.session != self.session:
            return
        name = scan.info.get("name") if isinstance(scan.info, dict) else None
        if not isinstance(name, str) or not name:
            log.error("scan %s of session %s has no scan_info['name']: not written", key, self.session)
            return
        writer = ScanDriver(ScanSource(scan, self.tuning.redis_retry_s), url, self.options, self.channel,
                            self.tuning, self._blissdata_version, self.journal)
        writer.profiling = self.profiling
        writer.start()
        with self._lock:
            self.writers[name] = writer
