"""One writer per scan (issue 22, item 3): the claim logic of nxpar/driver/claims.py against the real Redis —
atomic, refreshed while its driver runs, released when it ends, expiring after its TTL when its owner
dies, taken over at once by the same writer restarted, never by another writer or a live sibling."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis

from nxpar.driver.claims import (CLAIM_TTL_S, HOST, KEY_PREFIX, REFRESH_PERIOD_S, ClaimBook, Claim,
                                 ClaimedElsewhere, Holder, Refresh, may_take_over, run_claimed)
from nxpar.driver.states import State
from tests.helpers import ROOT

ME = Holder("session demo of w@tango:1", HOST, 1000, 0.0)


def test_only_the_same_writer_takes_a_claim_before_it_expires():
    fresh, stale = CLAIM_TTL_S - REFRESH_PERIOD_S, CLAIM_TTL_S - 2 * REFRESH_PERIOD_S - 0.1
    other = Holder("batch of batch@no-tango", HOST, 1001)
    assert not may_take_over(other, ME, stale, alive=lambda pid: False)  # another writer: the TTL
    sibling = Holder(ME.writer, HOST, 1001)
    assert may_take_over(sibling, ME, fresh, alive=lambda pid: False)  # its dead predecessor: at once
    assert not may_take_over(sibling, ME, fresh, alive=lambda pid: True)  # a live sibling (two batch runs)
    assert may_take_over(sibling, ME, stale, alive=lambda pid: True)  # missed two refreshes: the pid is reused
    remote = Holder(ME.writer, "other-node", 1000)
    assert not may_take_over(remote, ME, fresh) and may_take_over(remote, ME, stale)  # restarted elsewhere
    assert may_take_over(Holder(ME.writer, HOST, 1000), ME, fresh)  # our pid, not held by this process
    assert not may_take_over(Holder.parse(b"not json"), ME, 0.0)
    assert Holder.parse(ME.value()) == ME and Holder.parse(b"x").writer == "x"


@pytest.fixture
def url(stack):
    return stack.env["REDIS_DATA_URL"]


def scan_key() -> str:
    return f"esrf:scan:test-{uuid.uuid4().hex}"


class FakeDriver:
    """A ScanDriver's thread surface (join/is_alive): runs until stopped."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.done.wait, daemon=True)
        self.thread.start()

    def join(self, timeout=None):
        self.thread.join(timeout)

    def is_alive(self):
        return self.thread.is_alive()


def test_the_first_writer_owns_the_scan_the_other_is_told_who(url):
    key = scan_key()
    a, b = ClaimBook(url, "session s of a@t:1"), ClaimBook(url, "batch of batch@t:1")
    claim = a.take(key)
    assert isinstance(claim, Claim)
    refused = b.take(key)
    assert isinstance(refused, Holder) and refused.writer == "session s of a@t:1" and refused.pid == os.getpid()
    assert isinstance(ClaimBook(url, "session s of a@t:1").take(key), Holder)  # a second device of this process
    status = b.claim_for(key, "1_ascan")
    assert isinstance(status, ClaimedElsewhere) and status.state == State.ON and not status.is_alive()
    assert "written by session s of a@t:1 (pid" in status.reason and status.end_time is None
    claim.release()
    assert redis.Redis.from_url(url).get(KEY_PREFIX + key) is None
    time.sleep(1.1)  # the status asks Redis at most once a second
    assert status.state == State.OFF and status.end_time is not None and "its claim has ended" in status.reason
    assert isinstance(b.take(key), Claim)


def test_a_claim_is_refreshed_while_its_driver_runs_and_released_when_it_ends(url):
    key = scan_key()
    a, b = ClaimBook(url, "a", ttl_s=1.0, refresh_s=0.2), ClaimBook(url, "b", ttl_s=1.0, refresh_s=0.2)
    driver, claim = FakeDriver(), a.take(key)
    assert run_claimed(claim, lambda: driver) is driver
    for _ in range(3):  # three TTLs
        time.sleep(1.0)
        assert isinstance(b.take(key), Holder)
    assert claim.refreshes >= 10 and claim.longest_gap_s < 1.0, (claim.refreshes, claim.longest_gap_s)
    driver.done.set()
    time.sleep(0.3)  # the keeper joins the driver: released at once
    assert not a.held and redis.Redis.from_url(url).get(KEY_PREFIX + key) is None
    assert isinstance(b.take(key), Claim)


def test_a_driver_that_cannot_start_releases_its_claim(url):
    key, book = scan_key(), ClaimBook(url, "a")

    def fail():
        raise ValueError("no")

    with pytest.raises(ValueError):
        run_claimed(book.take(key), fail)
    assert redis.Redis.from_url(url).get(KEY_PREFIX + key) is None and not book.held


def test_a_dead_owners_claim_expires_after_its_ttl(url):
    key = scan_key()
    dead = Holder("a", "another-node", 12345, time.time(), ttl_s=1.0, refresh_s=0.2)  # never refreshed again
    redis.Redis.from_url(url).set(KEY_PREFIX + key, dead.value(), px=1000)
    t0 = time.monotonic()
    b = ClaimBook(url, "b")
    while isinstance(b.take(key), Holder):
        assert time.monotonic() - t0 < 1.5
        time.sleep(0.05)
    assert time.monotonic() - t0 > 0.8


def test_refresh_says_when_the_claim_had_expired_or_was_lost(url):
    r, key = redis.Redis.from_url(url), scan_key()
    claim = ClaimBook(url, "a").take(key)
    assert claim.refresh() == Refresh.KEPT and 0 < r.pttl(KEY_PREFIX + key) <= CLAIM_TTL_S * 1000
    r.delete(KEY_PREFIX + key)
    assert claim.refresh() == Refresh.RETAKEN and Holder.parse(r.get(KEY_PREFIX + key)) == claim.holder
    r.set(KEY_PREFIX + key, Holder("b").value())
    assert claim.refresh() == Refresh.LOST
    claim.release()
    assert Holder.parse(r.get(KEY_PREFIX + key)).writer == "b"  # never deletes another writer's claim


HOLDER_SCRIPT = """
import sys, threading, time
from nxpar.driver.claims import ClaimBook, Claim
claim = ClaimBook(sys.argv[1], "session s of w@t:1").take(sys.argv[2])
assert isinstance(claim, Claim)
driver = threading.Thread(target=time.sleep, args=(300,), daemon=True)
driver.start()
claim.keep_while(driver)
print("held", flush=True)
time.sleep(300)
"""


def test_the_same_writer_restarted_takes_its_claim_at_once_a_live_sibling_never(url):
    key = scan_key()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, url, key], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "held"
        book = ClaimBook(url, "session s of w@t:1")
        for _ in range(3):  # alive and refreshed: a sibling (e.g. a second batch run), never taken over
            assert Holder.parse(redis.Redis.from_url(url).get(KEY_PREFIX + key)).pid == proc.pid
            assert isinstance(book.take(key), Holder)
            time.sleep(REFRESH_PERIOD_S)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert isinstance(ClaimBook(url, "another writer").take(key), Holder)  # waits for the TTL
        t0 = time.monotonic()
        claim = book.take(key)  # the restarted owner: at once
        assert isinstance(claim, Claim) and time.monotonic() - t0 < 0.5
        assert claim.holder.pid == os.getpid()
        claim.release()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_refreshing_a_claim_costs_one_short_round_trip(url):
    """The cost the refresh period was chosen with (docs/claims.md): printed, bounded loosely."""
    claim = ClaimBook(url, "a").take(scan_key())
    n, t0 = 500, time.perf_counter()
    for _ in range(n):
        assert claim.refresh() == Refresh.KEPT
    per_call_ms = 1000 * (time.perf_counter() - t0) / n
    claim.release()
    print(f"claim refresh: {per_call_ms:.3f} ms per call")
    assert per_call_ms < 20
