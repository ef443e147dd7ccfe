"""RANK 0 ONLY: scans written on request, keyed by their blissdata scan key.

BLISS's "mapping" route (the `BlissWriter` device: `SaveScan(scan_key)`) and the Tango-less mode
(`nxpar.service.batch`) both hand scan keys to a `RequestedScans`. It loads the scan, runs one `ScanDriver`
per scan (through its public surface only: constructor, start/stop/kill, state/reason, warning)
and remembers the last 200 scans with their warnings, as blisswriter 3.0.0 does. A route never
fails because of one scan: a scan that cannot be written is FAULT with the reason.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from blissdata.exceptions import ScanLoadError, ScanNotFoundError
from blissdata.redis_engine.store import DataStore

from ..nexus.file_plan import FilePlan
from ..nexus.h5map_plan import has_h5map
from ..nexus.scan_info import saving_enabled
from ..protocol.options import SaveOptions, Tuning
from ..sources.blissdata_raw import blissdata_version
from ..util.disk import disk_space_message
from .durability import DURABILITY
from .claim_values import ClaimedElsewhere
from .claims import ClaimBook, file_of, run_claimed, writer_identity
from .journal import Journal, service_name
from .resume import Interruption, Resumer
from .plan_choice import make_plan
from .scan_driver import ScanDriver
from .scan_source import ScanSource, missing_first_rows
from .states import State
from .writer_channel import WriterChannel

log = logging.getLogger("nxpar.mapping")

MAX_REMEMBERED = 200  # scans kept for scan_state & co (blisswriter 3.0.0's LimitedDict)
DISK_CHECK_PERIOD_S = 3.0


class UnknownScan(KeyError):
    """A scan key this route was never asked to write (or has forgotten)."""

    def __str__(self) -> str:
        return f"No scan with key '{self.args[0]}' was requested (or it is one of the oldest forgotten)"


@dataclass(frozen=True)
class RoutePolicy:
    """Which scans a route writes and how it plans them."""

    writer_names: frozenset[str]  # scan_info['data_writer'] values written (others: "saving is disabled")
    require_h5map: bool  # True: only the publisher's h5map (the "mapping" route); False: h5map, else docs/interface.md §4


MAPPING_ROUTE = RoutePolicy(frozenset({"mapping"}), require_h5map=True)
ANY_ROUTE = RoutePolicy(frozenset({"mapping", "nexus"}), require_h5map=False)


def h5map_plan_only(info: dict[str, Any], options: SaveOptions, blissdata_version: str) -> FilePlan:
    """The mapping route writes what BLISS mapped, nothing else: no h5map is a FAULT with its reason."""
    if not has_h5map(info):
        raise ValueError("scan_info has no 'h5maps': the BlissWriter device writes only scans whose publisher "
                         "maps the file (BLISS: SCAN_SAVING.writer = 'mapping'); use the NexusWriter device otherwise")
    return make_plan(info, options, blissdata_version)


@dataclass
class RejectedScan:
    """A requested scan that could not even get a writer (e.g. no scan_info['name']): FAULT, never alive."""

    key: str
    reason: str
    name: str = ""
    state: State = State.FAULT
    warning: str = ""
    end_time: float = field(default_factory=time.time)

    def is_alive(self) -> bool:
        return False

    def stop(self, timeout: float | None = None) -> None:
        pass

    kill = stop


@dataclass
class ScanRecord:
    key: str
    writer: Any  # ScanDriver | InterruptedScan | RejectedScan | ClaimedElsewhere
    warnings: list[str] = field(default_factory=list)
    last_disk_check: float = 0.0


class RequestedScans:
    def __init__(self, name: str, channel: WriterChannel, url_provider: Callable[[], str], options: SaveOptions,
                 tuning: Tuning, policy: RoutePolicy, instance: str = "") -> None:
        self.name = name
        self.channel = channel
        self.options = options
        self.tuning = tuning
        self.policy = policy
        self._url_provider = url_provider
        self._url = ""
        self._store: DataStore | None = None
        self._records: collections.OrderedDict[str, ScanRecord] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.service = service_name(instance)
        self.journal: Journal | None = None  # made once the Redis URL is known
        self.claims: ClaimBook | None = None  # one writer per scan (claims.py), with the journal
        self._blissdata_version = blissdata_version()

    # -- life cycle --------------------------------------------------------------------------------
    def connect(self) -> None:
        """Redis reachable and initialised for blissdata, else raises (the device goes FAULT)."""
        if self._store is None:
            self._url = self._url_provider()
            store = DataStore(self._url)
            store.get_last_scan_timetag()
            self.journal = Journal(self.name.replace("/", "_"), self.service, self._url)
            self.claims = ClaimBook(self._url, writer_identity(self.name, self.service), self.service)
            self._store = store
            self._resume_previous_run(store)

    @property
    def running(self) -> bool:
        """A scan is being written (or its claim not yet released)."""
        return any(r.writer.is_alive() for r in list(self._records.values())) or bool(self.claims and self.claims.held)

    def stop_all(self, timeout: float = 10, resumable: bool = True) -> None:
        """Service shutdown: finalise what is being written (FAILED); resumable: the next run writes those
        scans again from Redis (the journal keeps them)."""
        for record in list(self._records.values()):
            if record.writer.is_alive():
                record.writer.stop(timeout=timeout, resumable=resumable)

    # -- requests ----------------------------------------------------------------------------------
    def request(self, key: str) -> bool:
        """Start writing the scan `key` (idempotent; a scan another writer owned is tried again once its claim
        has ended). Raises UnknownScan when Redis has no such scan."""
        with self._lock:
            if self._requested(key):
                return True
        assert self._store is not None, "connect() first"
        try:
            scan = self._store.load_scan(key)
        except (ScanNotFoundError, ScanLoadError) as e:
            raise UnknownScan(key) from e
        with self._lock:
            if self._requested(key):  # a concurrent request won
                return True
            self.remember(key, self._new_writer(scan))
        return True

    def _requested(self, key: str) -> bool:
        record = self._records.get(key)
        return record is not None and not (isinstance(record.writer, ClaimedElsewhere)
                                           and record.writer.state == State.OFF)

    def _new_writer(self, scan: Any, interruption: Interruption | None = None) -> Any:
        """A started ScanDriver for the scan (journaled), or a RejectedScan saying why not."""
        info = scan.info if isinstance(scan.info, dict) else {}
        name = info.get("name")
        if not isinstance(name, str) or not name:
            log.error("%s: scan %s has no scan_info['name']: not written", self.name, scan.key)
            return RejectedScan(scan.key, "scan_info['name'] must be a non-empty string")
        options = self._options_for(info)
        claim = None
        if self.claims is not None and saving_enabled(info, options.writer_name):
            claim = self.claims.claim_for(scan.key, name, file_of(info))
            if isinstance(claim, ClaimedElsewhere):
                if interruption is not None and self.journal is not None:
                    self.journal.remove(scan.key)  # its owner writes it
                return claim
        if interruption is None and self.journal is not None:
            self.journal.discovered(scan.key, name)
        writer = run_claimed(claim, lambda: self._start_driver(scan, options, interruption))
        log.info("%s: writing scan %s (%s)%s", self.name, name, scan.key, " again" if interruption else "")
        return writer

    def _start_driver(self, scan: Any, options: SaveOptions, interruption: Interruption | None) -> ScanDriver:
        writer = ScanDriver(ScanSource(scan, self.tuning.redis_retry_s), self._url, options,
                            self.channel, self.tuning, self._blissdata_version, self.journal,
                            plan_factory=h5map_plan_only if self.policy.require_h5map else make_plan,
                            interruption=interruption, durability=DURABILITY)
        writer.start()
        return writer

    def _options_for(self, info: dict[str, Any]) -> SaveOptions:
        data_writer = info.get("data_writer")
        if data_writer in self.policy.writer_names:
            return dataclasses.replace(self.options, writer_name=data_writer)
        return self.options

    def remember(self, key: str, writer: Any) -> None:
        """Keep the scan's writer for scan_state & co; the oldest finished ones beyond 200 are forgotten."""
        self._records[key] = ScanRecord(key, writer)
        self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Keep MAX_REMEMBERED scans; a scan still being written is never forgotten."""
        for key in list(self._records):
            if len(self._records) <= MAX_REMEMBERED:
                return
            if not self._records[key].writer.is_alive():
                del self._records[key]

    # -- per-scan status -------------------------------------------------------------------------
    def record(self, key: str) -> ScanRecord:
        try:
            return self._records[key]
        except KeyError:
            raise UnknownScan(key) from None

    def state(self, key: str) -> str:
        """INIT/ON/OFF/FAULT as in the "nexus" route; UNKNOWN for a key never requested."""
        record = self._records.get(key)
        return "UNKNOWN" if record is None else State(record.writer.state).value

    def reason(self, key: str) -> str:
        return self.record(key).writer.reason

    def warnings(self, key: str) -> list[str]:
        """The scan's warnings so far (new ones appended on each call): back-pressure, low disk space."""
        record = self.record(key)
        writer = record.writer
        if writer.warning and (not record.warnings or record.warnings[-1] != writer.warning):
            record.warnings.append(writer.warning)
        now = time.monotonic()
        if writer.is_alive() and now - record.last_disk_check >= DISK_CHECK_PERIOD_S:
            record.last_disk_check = now
            message = disk_space_message(getattr(writer, "filename", None), self.options.recommended_disk_space)
            if message and message not in record.warnings:
                record.warnings.append(message)
                log.warning("%s: scan %s: %s", self.name, writer.name, message)
        return list(record.warnings)

    def records(self) -> list[ScanRecord]:
        return list(self._records.values())

    # -- restart after a crash -----------------------------------------------------------------------
    def _resume_previous_run(self, store: DataStore) -> None:
        """Scans a previous run was writing: written again from Redis, or FAULT with the reason."""
        assert self.journal is not None
        why = os.environ.get("NXPAR_RESTART_REASON") or "the previous run of the writer service ended while writing it"
        resumer = Resumer(self.journal, self.channel, why, store.load_scan, self._new_writer, missing_first_rows)
        for status in resumer.resume_all():
            self.remember(getattr(status, "key", ""), status)
