"""RANK 0 ONLY: one writer per scan — an atomic claim per scan in Redis (operators: docs/claims.md).

Any two nxpar writers on one Redis (service and NexusWriterBatch, two services, two devices of one
service) may be asked for the same scan. Before journaling it or touching a file a writer takes
`nxpar:claim:<scan key>` (SET NX PX); the others log at INFO who owns it and register the scan as
`ClaimedElsewhere` (ON while the claim is held, then OFF; never FAULT, so the BLISS scan goes on). A
scan the route would not save is never claimed. A keeper thread per scan joins its ScanDriver,
refreshing the claim every REFRESH_PERIOD_S, and deletes it once the driver has ended (file closed).
The value names the owner (route and service `<instance>@<TANGO_HOST>`, host, pid, TTL): a dead
owner's claim expires after CLAIM_TTL_S, but the same writer restarted takes it over at once (its
predecessor's pid is dead, or two refreshes were missed), so resume (resume.py) is not delayed.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import redis

from ..util.retry import call_with_backoff
from .states import State

log = logging.getLogger("nxpar.claims")

CLAIM_TTL_S = 10.0  # a dead owner's scans wait this long for another writer (its own restart: none)
REFRESH_PERIOD_S = 2.0  # 5 tries before the TTL ends; measured: tests/test_claims.py, test_one_writer_per_scan.py
KEY_PREFIX = "nxpar:claim:"
HOST = socket.gethostname()

_REFRESH = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
return redis.call('get', KEYS[1])"""  # 1: kept, 2: taken again (it had expired), else: the new holder
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_SWAP = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) end return 0"


def writer_identity(route: str, service: str) -> str:
    """Who writes: 'session demo of trial@host:10000', 'batch of batch@no-tango'."""
    return f"{route} of {service}"


def pid_alive(pid: int) -> bool:
    if pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's
            pass
    return pid > 0


@dataclass(frozen=True)
class Holder:
    """The value of a claim: who holds it, from where, since when, and the TTL it keeps."""

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


def may_take_over(holder: Holder, me: Holder, ttl_left_s: float, alive: Callable[[int], bool] = pid_alive) -> bool:
    """Only the same writer takes a claim before it expires: its dead predecessor's (restart), never a
    live sibling's (e.g. two batch runs); another writer waits for the TTL."""
    if holder.writer != me.writer:
        return False
    if holder.host == me.host and holder.pid == me.pid:
        return True  # not held by this process (see _HELD): a dead predecessor that had our pid
    if holder.host == me.host and not alive(holder.pid):
        return True
    return not holder.fresh(ttl_left_s)


class Refresh(enum.Enum):
    KEPT = "kept"
    RETAKEN = "taken again after it had expired"
    LOST = "lost"


class Driver(Protocol):
    def join(self, timeout: float | None = None) -> None: ...
    def is_alive(self) -> bool: ...


_HELD: dict[str, "Claim"] = {}  # scan key -> the claim this process holds (two devices of one service)
_HELD_LOCK = threading.Lock()


class ClaimBook:
    """The claims of one writer (a session subscriber or a requested-scans route) in one Redis."""

    def __init__(self, redis_url: str, writer: str, ttl_s: float = CLAIM_TTL_S,
                 refresh_s: float = REFRESH_PERIOD_S) -> None:
        self.redis_url, self.writer, self.ttl_s, self.refresh_s = redis_url, writer, ttl_s, refresh_s
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=refresh_s, socket_connect_timeout=refresh_s)
        self._refresh = self.redis.register_script(_REFRESH)
        self._release = self.redis.register_script(_RELEASE)
        self._swap = self.redis.register_script(_SWAP)
        self.held: set[Claim] = set()  # until released (a driver that just ended: in a moment)

    def call(self, func: Callable[[], Any], what: str) -> Any:
        return call_with_backoff(func, what, self.ttl_s)

    def holder(self, scan_key: str) -> Holder | None:
        raw = self.call(lambda: self.redis.get(KEY_PREFIX + scan_key), "claim holder")
        return None if raw is None else Holder.parse(raw)

    def claim_for(self, scan_key: str, name: str) -> "Claim | ClaimedElsewhere":
        """The scan's claim, or (logged at INFO) the status of a scan another writer owns."""
        outcome = self.take(scan_key)
        if isinstance(outcome, Claim):
            return outcome
        log.info("%s: scan %s (%s) is written by %s: left alone (claim %s)", self.writer, name, scan_key,
                 outcome.describe(), KEY_PREFIX + scan_key)
        return ClaimedElsewhere(scan_key, name, outcome, self)

    def take(self, scan_key: str) -> "Claim | Holder":
        """Atomically: the claim, or who holds it."""
        with _HELD_LOCK:
            held = _HELD.get(scan_key)
            if held is not None:
                return held.holder
            outcome = self._take_in_redis(scan_key, Holder(self.writer, HOST, os.getpid(), time.time(), self.ttl_s,
                                                           self.refresh_s))
            if isinstance(outcome, Claim):
                _HELD[scan_key] = outcome
                self.held.add(outcome)
            return outcome

    def _take_in_redis(self, scan_key: str, me: Holder) -> "Claim | Holder":
        name, ttl_ms = KEY_PREFIX + scan_key, int(self.ttl_s * 1000)
        holder = Holder("unknown")
        for _ in range(3):  # the holder may release or expire between the calls
            if self.call(lambda: self.redis.set(name, me.value(), nx=True, px=ttl_ms), "claim"):
                return Claim(self, scan_key, me)
            raw, pttl = self.call(lambda: self.redis.pipeline().get(name).pttl(name).execute(), "claim holder")
            if raw is None:
                continue
            holder = Holder.parse(raw)
            if not may_take_over(holder, me, pttl / 1000):
                return holder
            if self.call(lambda: self._swap(keys=[name], args=[raw, me.value(), ttl_ms]), "claim take-over"):
                log.info("%s: scan %s: claim of %s taken over", self.writer, scan_key, holder.describe())
                return Claim(self, scan_key, me)
        return holder


class Claim:
    """A claim this process holds: refreshed while its driver runs, deleted when it ends."""

    def __init__(self, book: ClaimBook, scan_key: str, holder: Holder) -> None:
        self.book, self.scan_key, self.holder = book, scan_key, holder
        self.name = KEY_PREFIX + scan_key
        self.refreshes, self.longest_gap_s, self.slowest_call_s = 0, 0.0, 0.0  # measured: logged at DEBUG
        self._last_ok = time.monotonic()

    def refresh(self) -> Refresh:
        """One round trip: the TTL renewed (KEPT), the key made again (RETAKEN), or LOST to another writer."""
        t0 = time.perf_counter()
        answer = self.book._refresh(keys=[self.name], args=[self.holder.value(), int(self.book.ttl_s * 1000)])
        now = time.monotonic()
        self.slowest_call_s = max(self.slowest_call_s, time.perf_counter() - t0)
        self.longest_gap_s = max(self.longest_gap_s, now - self._last_ok)
        self.refreshes, self._last_ok = self.refreshes + 1, now
        if isinstance(answer, bytes):
            log.error("%s: claim %s lost (it expired and %s took it): that writer may write the scan too",
                      self.book.writer, self.name, Holder.parse(answer).describe())
            return Refresh.LOST
        return Refresh.KEPT if answer == 1 else Refresh.RETAKEN

    def release(self) -> None:
        try:
            self.book.call(lambda: self.book._release(keys=[self.name], args=[self.holder.value()]), "claim release")
        except Exception as e:  # Redis unreachable: the claim expires after its TTL
            log.warning("%s: claim %s not released (%s): it expires within %.0f s", self.book.writer, self.name, e,
                        self.book.ttl_s)
        with _HELD_LOCK:
            if _HELD.get(self.scan_key) is self:
                del _HELD[self.scan_key]
            self.book.held.discard(self)
        log.debug("claim %s released: %d refreshes, longest gap %.2f s, slowest refresh %.1f ms", self.name,
                  self.refreshes, self.longest_gap_s, 1000 * self.slowest_call_s)

    def keep_while(self, driver: Driver) -> None:
        """Refresh the claim while `driver` runs (a thread joining it), release it when it has ended."""
        threading.Thread(target=self._keep, args=(driver,), name=f"claim-{self.scan_key}", daemon=True).start()

    def _keep(self, driver: Driver) -> None:
        outcome = Refresh.KEPT
        while outcome != Refresh.LOST:
            driver.join(self.book.refresh_s)
            if not driver.is_alive():
                break
            try:
                outcome = self.refresh()
            except Exception as e:  # Redis unreachable: tried again at the next period
                log.warning("%s: claim %s not refreshed: %s", self.book.writer, self.name, e)
                continue
            if outcome == Refresh.RETAKEN:
                log.warning("%s: claim %s had expired: %s", self.book.writer, self.name, outcome.value)
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


class ClaimedElsewhere:
    """A `ScanStatus` (states.py) of a scan another writer owns: ON while it holds the claim, then OFF;
    never alive here, nothing journaled, no file touched."""

    interrupted, plan, filename, bytes_written, warning = False, None, None, 0, ""
    urls: list[str] = []

    def __init__(self, key: str, name: str, holder: Holder, book: ClaimBook) -> None:
        self.key, self.name, self.holder, self._book = key, name, holder, book
        self.created = self.start_time = time.time()
        self._ended: float | None = None
        self._checked = 0.0

    def _claim_ended(self) -> bool:
        """The owner released its claim (or it expired); Redis asked at most once a second."""
        if self._ended is None and time.monotonic() - self._checked >= 1.0:
            self._checked = time.monotonic()
            try:  # no retries: the Tango thread asks
                raw = self._book.redis.get(KEY_PREFIX + self.key)
            except redis.RedisError:  # Redis unreachable: still ON
                return False
            if raw is None or Holder.parse(raw) != self.holder:
                self._ended = time.time()
        return self._ended is not None

    @property
    def state(self) -> State:
        return State.OFF if self._claim_ended() else State.ON

    @property
    def reason(self) -> str:
        ended = "; its claim has ended" if self._claim_ended() else ""
        return f"written by {self.holder.describe()}, not by this writer{ended}"

    @property
    def end_time(self) -> float | None:
        self._claim_ended()
        return self._ended

    def is_alive(self) -> bool:
        return False

    def stop(self, timeout: float | None = None, resumable: bool = False) -> None:
        """Nothing to stop or kill here: the owner writes the scan."""

    kill = stop

    def progress(self) -> dict[str, dict[str, int]]:
        return {}

    def backlog(self) -> int:
        return 0

    published = backlog
