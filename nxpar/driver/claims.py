"""RANK 0 ONLY: one writer per scan — an atomic claim per scan in Redis (operators: docs/claims.md).

Any two nxpar writers on one Redis (service and NexusWriterBatch, two services, two devices of one
service) may be asked for the same scan. Before journaling it or touching a file a writer takes, in one
atomic step, `nxpar:claim:<scan key>` and `nxpar:claim:file:<scan file>`: the file claim is shared by
the scans one process writes into that file (a sequence and its children, consecutive scans of a
dataset), so two MPI jobs never have one file open at once. A writer refused logs at INFO who owns the
scan and registers it as `ClaimedElsewhere` (claim_values.py: ON, then OFF; never FAULT, so the BLISS scan
goes on). A scan the route would not save is never claimed. A keeper thread per scan joins its
ScanDriver, refreshing both claims every REFRESH_PERIOD_S, and deletes them once the driver has ended
(file closed). A dead owner's claims expire after CLAIM_TTL_S, but the same writer restarted takes them
over at once (claim_values.may_take_over), so resume (resume.py) is not delayed.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Protocol

import redis

from ..nexus.scan_info import scan_file
from ..util.retry import call_with_backoff
from .claim_values import CLAIM_TTL_S, REFRESH_PERIOD_S, ClaimedElsewhere, Holder, Refusal, may_take_over

log = logging.getLogger("nxpar.claims")

KEY_PREFIX = "nxpar:claim:"
FILE_PREFIX = "nxpar:claim:file:"
HOST = socket.gethostname()
PROCESS_START = time.time()

# KEYS: scan claim, file claim; ARGV: scan value, file value ('' = no file), TTL in ms
_TAKE = """local s = redis.call('get', KEYS[1])
if s then return {1, s} end
if ARGV[2] ~= '' then
  local f = redis.call('get', KEYS[2])
  if f and f ~= ARGV[2] then return {2, f} end
  redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {0, ''}"""
_REFRESH = """local kept = 1
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[3])
elseif redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then kept = 2
else return redis.call('get', KEYS[1]) end
if ARGV[2] ~= '' and redis.call('get', KEYS[2]) == ARGV[2] then redis.call('pexpire', KEYS[2], ARGV[3])
elseif ARGV[2] ~= '' then redis.call('set', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) end
return kept"""  # 1: kept, 2: taken again (it had expired), else: the scan's new holder
_DELETE_IF = """local n = 0
for i, key in ipairs(KEYS) do if redis.call('get', key) == ARGV[i] then n = n + redis.call('del', key) end end
return n"""


def writer_identity(route: str, service: str) -> str:
    """Who writes: 'session demo of trial@host:10000', 'batch of batch@no-tango'."""
    return f"{route} of {service}"


def file_of(info: Any) -> str:
    """The scan file the claim covers ('' when scan_info names none yet)."""
    try:
        return os.path.realpath(scan_file(info))
    except (KeyError, TypeError, ValueError, AttributeError):
        return ""


class Driver(Protocol):
    def join(self, timeout: float | None = None) -> None: ...
    def is_alive(self) -> bool: ...


_HELD: dict[str, "Claim"] = {}  # scan key -> the claim this process holds (two devices of one service)
_FILES: dict[str, int] = {}  # file -> scans of this process claiming it (the file claim is shared)
_HELD_LOCK = threading.Lock()


class ClaimBook:
    """The claims of one writer (a session subscriber or a requested-scans route) in one Redis."""

    def __init__(self, redis_url: str, writer: str, service: str, ttl_s: float = CLAIM_TTL_S,
                 refresh_s: float = REFRESH_PERIOD_S) -> None:
        self.redis_url, self.writer, self.ttl_s, self.refresh_s = redis_url, writer, ttl_s, refresh_s
        self.process = Holder(service, HOST, os.getpid(), PROCESS_START, ttl_s, refresh_s)  # its file claims
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=refresh_s, socket_connect_timeout=refresh_s)
        self.take_script = self.redis.register_script(_TAKE)
        self.refresh_script = self.redis.register_script(_REFRESH)
        self.delete_script = self.redis.register_script(_DELETE_IF)
        self.held: set[Claim] = set()  # until released (a driver that just ended: in a moment)

    def call(self, func: Callable[[], Any], what: str) -> Any:
        return call_with_backoff(func, what, self.ttl_s)

    def claim_for(self, scan_key: str, name: str, filename: str) -> "Claim | ClaimedElsewhere":
        """The scan's claim, or (logged at INFO) the status of a scan another writer owns."""
        outcome = self.take(scan_key, filename)
        if isinstance(outcome, Claim):
            return outcome
        log.info("%s: scan %s (%s) not written here: %s", self.writer, name, scan_key, outcome.describe())
        keys = [KEY_PREFIX + scan_key] + ([FILE_PREFIX + filename] if filename else [])
        return ClaimedElsewhere(scan_key, name, outcome, lambda: self.redis.mget(keys))

    def take(self, scan_key: str, filename: str = "") -> "Claim | Refusal":
        """Atomically: the scan's and its file's claims, or who holds them."""
        with _HELD_LOCK:
            held = _HELD.get(scan_key)
            if held is not None:
                return Refusal(held.holder)
            me = Holder(self.writer, HOST, os.getpid(), time.time(), self.ttl_s, self.refresh_s)
            outcome = self._take_in_redis(Claim(self, scan_key, filename, me))
            if isinstance(outcome, Claim):
                _HELD[scan_key] = outcome
                _FILES[filename] = _FILES.get(filename, 0) + 1
                self.held.add(outcome)
            return outcome

    def _take_in_redis(self, claim: "Claim") -> "Claim | Refusal":
        ttl_ms, refusal = int(self.ttl_s * 1000), Refusal(Holder("unknown"))
        for _ in range(3):  # a holder taken over, released or expired meanwhile: once more
            code, raw = self.call(lambda: self.take_script(keys=claim.keys, args=[*claim.values, ttl_ms]), "claim")
            if code == 0:
                return claim
            key, holder = claim.keys[code - 1], Holder.parse(raw)
            refusal = Refusal(holder, claim.filename if code == 2 else "")
            ttl_left_s = self.call(lambda: self.redis.pttl(key), "claim TTL") / 1000
            if not may_take_over(holder, claim.holder if code == 1 else self.process, ttl_left_s):
                return refusal
            if self.call(lambda: self.delete_script(keys=[key], args=[raw]), "claim take-over"):
                log.info("%s: claim %s of %s taken over", self.writer, key, holder.describe())
        return refusal


class Claim:
    """The claims this process holds for one scan: refreshed while its driver runs, deleted when it ends."""

    def __init__(self, book: ClaimBook, scan_key: str, filename: str, holder: Holder) -> None:
        self.book, self.scan_key, self.filename, self.holder = book, scan_key, filename, holder
        self.keys = [KEY_PREFIX + scan_key, FILE_PREFIX + filename]
        self.values = [holder.value(), book.process.value() if filename else ""]
        self.refreshes, self.longest_gap_s, self.slowest_call_s = 0, 0.0, 0.0  # measured: logged at DEBUG
        self._last_ok = time.monotonic()

    def refresh(self) -> bool:
        """One round trip: both TTLs renewed (keys made again if they had expired); False: the scan's claim
        was lost to another writer."""
        t0 = time.perf_counter()
        answer = self.book.refresh_script(keys=self.keys, args=[*self.values, int(self.book.ttl_s * 1000)])
        now = time.monotonic()
        self.slowest_call_s = max(self.slowest_call_s, time.perf_counter() - t0)
        self.longest_gap_s = max(self.longest_gap_s, now - self._last_ok)
        self.refreshes, self._last_ok = self.refreshes + 1, now
        if isinstance(answer, bytes):
            log.error("%s: claim %s lost (it expired and %s took it): that writer may write the scan too",
                      self.book.writer, self.keys[0], Holder.parse(answer).describe())
            return False
        if answer == 2:
            log.warning("%s: claim %s had expired: taken again", self.book.writer, self.keys[0])
        return True

    def release(self) -> None:
        with _HELD_LOCK:
            if _HELD.get(self.scan_key) is self:
                del _HELD[self.scan_key]
            last_of_file = _FILES.get(self.filename, 0) <= 1
            _FILES[self.filename] = _FILES.get(self.filename, 0) - 1
            if last_of_file:
                del _FILES[self.filename]
            self.book.held.discard(self)
            keys = self.keys if last_of_file and self.filename else self.keys[:1]
            try:
                self.book.call(lambda: self.book.delete_script(keys=keys, args=self.values[:len(keys)]), "claim release")
            except Exception as e:  # Redis unreachable: the claims expire after their TTL
                log.warning("%s: claim %s not released (%s): it expires within %.0f s", self.book.writer,
                            self.keys[0], e, self.book.ttl_s)
        log.debug("claim %s released: %d refreshes, longest gap %.2f s, slowest refresh %.1f ms", self.keys[0],
                  self.refreshes, self.longest_gap_s, 1000 * self.slowest_call_s)

    def keep_while(self, driver: Driver) -> None:
        """Refresh the claims while `driver` runs (a thread joining it), release them when it has ended."""
        threading.Thread(target=self._keep, args=(driver,), name=f"claim-{self.scan_key}", daemon=True).start()

    def _keep(self, driver: Driver) -> None:
        kept = True
        while kept:
            driver.join(self.book.refresh_s)
            if not driver.is_alive():
                break
            try:
                kept = self.refresh()
            except Exception as e:  # Redis unreachable: tried again at the next period
                log.warning("%s: claim %s not refreshed: %s", self.book.writer, self.keys[0], e)
        self.release()


def run_claimed(claim: Claim | None, start: Callable[[], Driver]) -> Any:
    """start() a scan's driver under its claim (None: not claimed); a driver that cannot start releases it."""
    try:
        driver = start()
    except BaseException:
        if claim is not None:
            claim.release()
        raise
    if claim is not None:
        claim.keep_while(driver)
    return driver
