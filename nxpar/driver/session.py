"""RANK 0 ONLY: the session subscriber — discovers a BLISS session's scans in Redis.

One thread per device/session: every scan of the session gets a ScanDriver. States: INIT, ON, OFF,
FAULT (RUNNING is derived: ON with at least one live scan driver). A malformed scan never faults the
session: its driver FAULTs instead.

It heals itself: Redis unreachable makes the session FAULT with the reason while it keeps trying;
once Redis answers again it is ON, and discovery goes on from the last scan it saw, so the scans
published meanwhile are written. At its first start in a process it resumes the scans a previous run
left unfinished (driver/resume.py) and continues discovery from where that run stopped (the journal),
so a scan created while no job ran is written too.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable

from blissdata.exceptions import NoScanAvailable, ScanLoadError, ScanNotFoundError
from blissdata.redis_engine.store import DataStore

from ..nexus.scan_info import saving_enabled
from ..protocol.options import SaveOptions, Tuning
from ..sources.blissdata_raw import blissdata_version
from ..util.retry import call_with_backoff
from .durability import DURABILITY
from .claim_values import ClaimedElsewhere
from .claims import ClaimBook, file_of, run_claimed, writer_identity
from .journal import Journal, service_name
from .profiling import log_resources
from .resume import Interruption, Resumer
from .scan_driver import ScanDriver
from .scan_source import ScanSource, missing_first_rows
from .states import REASON_DONE, REASON_RUNNING, ScanStatus, State
from .writer_channel import WriterChannel

log = logging.getLogger("nxpar.session")

BEACON_GIVE_UP_S = 20.0
DEFAULT_PURGE_DELAY_S = 300.0
RECONNECT_MAX_S = 5.0  # Redis unreachable: tried again at most this often


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
        self.service = service_name(instance)
        self._url_provider = url_provider
        self.state, self.reason = State.INIT, "instantiation"
        self.url = ""
        self.writers: dict[str, ScanStatus] = {}
        self.journal: Journal | None = None  # made once the Redis URL is known (one per service and Redis)
        self.claims: ClaimBook | None = None  # one writer per scan (claims.py), with the journal
        self.notice = os.environ.get("NXPAR_RESTART_REASON", "")
        self.profiling = "OFF"  # applied to scan drivers created from now on
        self._last_resource_log = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._since: str | None = None  # Redis timetag discovery goes on after
        self._resumed = False  # the previous run's scans are taken up once per process
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
        # Tango Init) is never missed, however late the thread gets going. At a process's first start
        # the journal's position (older) wins: see _connect.
        try:
            self._since = DataStore(self._url_provider()).get_last_scan_timetag()
        except Exception:  # Redis down or not initialised: the thread reports it (FAULT) and retries
            self._since = None
        self._thread = threading.Thread(target=self._run, name=f"session-{self.session}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._let_ended_scans_finish()
        if self.running:
            raise RuntimeError("Cannot stop session subscriber when scans are running")
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _let_ended_scans_finish(self, timeout_s: float = 5.0) -> None:
        """A scan reports OFF or FAULT once its file is closed; its thread then logs the end and
        releases the scan (journal, claims): a stop right after the end waits for that, not refuses."""
        deadline = time.monotonic() + timeout_s
        for w in list(self.writers.values()):
            if w.is_alive() and w.state in (State.OFF, State.FAULT):
                w.join(max(deadline - time.monotonic(), 0.0))

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

    def _last_activity(self) -> float:
        """When any live scan of the session last changed (monotonic): a sequence's children keep it alive."""
        return max((w.last_change for w in list(self.writers.values()) if w.is_alive() and hasattr(w, "last_change")),
                   default=0.0)

    def sorted_writers(self) -> list[ScanStatus]:
        return sorted(self.writers.values(), key=lambda w: w.start_time or w.created)

    # -- the thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        """Connect and discover until stopped; any failure is a FAULT with its reason, tried again."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                store = self._connect()
                log.info("session %s: %s %s", self.session, REASON_RUNNING, self.url)  # the start-up log names it
                self.state, self.reason = State.ON, REASON_RUNNING
                delay = 0.5
                self._discover(store)
            except _Stopping:
                break
            except Exception as e:
                self._fault(e)
                self._stop.wait(delay)
                delay = min(2 * delay, RECONNECT_MAX_S)
        self.state, self.reason = State.OFF, REASON_DONE

    def _fault(self, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if self.state != State.FAULT:
            log.error("session %s FAULT (retrying until it works): %s", self.session, reason)
        since = time.strftime("%H:%M:%S")
        where = f" ({self.url})" if self.url else ""
        self.state = State.FAULT
        if not self.reason.startswith("Redis"):
            self.reason = f"Redis{where} unusable since {since}: {reason}; retrying"

    def _connect(self) -> DataStore:
        """Redis reachable; the journal; at the first start the previous run's scans and position."""
        self.url = self._url_provider()
        store = DataStore(self.url)
        last = store.get_last_scan_timetag()
        if self.journal is None or self.journal.redis_url != self.url:
            self.journal = Journal(self.session, self.service, self.url)
            self.claims = ClaimBook(self.url, writer_identity(f"session {self.session}", self.service), self.service)
        if not self._resumed:
            self._resume_previous_run(store)
        if self._since is None:
            self._since = last
        return store

    def _resume_previous_run(self, store: DataStore) -> None:
        assert self.journal is not None
        self._since = self.journal.load_since() or self._since
        why = self.notice or "the previous run of the writer service ended while writing it"
        resumer = Resumer(self.journal, self.channel, why, store.load_scan,
                          lambda scan, interruption: self._start_driver(scan, interruption), missing_first_rows)
        for status in resumer.resume_all():
            with self._lock:
                self.writers[status.name] = status
        self._resumed = True

    def _discover(self, store: DataStore) -> None:
        while not self._stop.is_set():
            try:
                since, key = store.get_next_scan(since=self._since, timeout=1)
            except NoScanAvailable:
                self._periodic()
                continue
            self._new_scan(store, key)
            self._since = since
            if self.journal is not None:
                self.journal.save_since(since)
            self._periodic()
        raise _Stopping()

    def _periodic(self) -> None:
        self.purge(self.purge_delay_s)
        if self.profiling != "OFF" and time.monotonic() - self._last_resource_log >= 10:
            log_resources(log)
            self._last_resource_log = time.monotonic()

    def _new_scan(self, store: DataStore, key: str) -> None:
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
        status = self._start_driver(scan, None)
        with self._lock:
            self.writers[name] = status

    def _start_driver(self, scan: Any, interruption: Interruption | None) -> ScanStatus:
        """A started ScanDriver holding the scan's claim (journaled), or, when another writer owns the scan,
        its ClaimedElsewhere status (not journaled: a resumed scan leaves the journal; no file touched)."""
        claim = None
        if self.claims is not None and saving_enabled(scan.info, self.options.writer_name):
            claim = self.claims.claim_for(scan.key, scan.info["name"], file_of(scan.info))
            if isinstance(claim, ClaimedElsewhere):
                if interruption is not None and self.journal is not None:
                    self.journal.remove(scan.key)  # its owner writes it
                return claim
        if interruption is None and self.journal is not None:
            self.journal.discovered(scan.key, scan.info["name"])
        return run_claimed(claim, lambda: self._new_driver(scan, interruption))

    def _new_driver(self, scan: Any, interruption: Interruption | None) -> ScanDriver:
        writer = ScanDriver(ScanSource(scan, self.tuning.redis_retry_s), self.url, self.options, self.channel,
                            self.tuning, self._blissdata_version, self.journal, interruption=interruption,
                            durability=DURABILITY,
                            elsewhere=self._last_activity)
        writer.profiling = self.profiling
        writer.start()
        return writer
