"""One writer per scan (issue 22, item 3): the claim logic of nxpar/driver/claims.py against the real Redis —
atomic, refreshed while its driver runs, released when it ends, expiring after its TTL when its owner
dies, taken over at once by the same writer restarted, never by another writer or a live sibling; a file
one process writes is never taken by another, whichever scan asks."""
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

from nxpar.driver.claim_values import (CLAIM_TTL_S, REFRESH_PERIOD_S, ClaimedElsewhere, Holder, Refusal,
                                       may_take_over, pid_alive)
from nxpar.driver.claims import FILE_PREFIX, HOST, KEY_PREFIX, Claim, ClaimBook, run_claimed
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


def book(url: str, writer: str, service: str = "", **kw) -> ClaimBook:
    return ClaimBook(url, writer, service or writer.rpartition(" of ")[2] or writer, **kw)


def value_of(url: str, key: str) -> Holder | None:
    raw = redis.Redis.from_url(url).get(key)
    return None if raw is None else Holder.parse(raw)


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


def test_a_zombie_predecessor_is_dead_for_the_take_over():
    """A rank of a torn-down MPI job may linger as a zombie until its proxy reaps it: its claims are taken."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        os.kill(child.pid, 0)  # the pid still exists...
        assert not pid_alive(child.pid)  # ...but nothing runs there
        assert may_take_over(Holder(ME.writer, HOST, child.pid), ME, CLAIM_TTL_S)
    finally:
        child.wait()
    assert pid_alive(os.getpid()) and not pid_alive(0)


def test_the_first_writer_owns_the_scan_the_other_is_told_who(url):
    key = scan_key()
    a, b = book(url, "session s of a@t:1"), book(url, "batch of batch@t:1")
    claim = a.take(key)
    assert isinstance(claim, Claim)
    refused = b.take(key)
    assert isinstance(refused, Refusal) and refused.holder.writer == "session s of a@t:1"
    assert refused.holder.pid == os.getpid() and not refused.filename
    assert isinstance(book(url, "session s of a@t:1").take(key), Refusal)  # a second device of this process
    status = b.claim_for(key, "1_ascan", "")
    assert isinstance(status, ClaimedElsewhere) and status.state == State.ON and not status.is_alive()
    assert status.reason.startswith("not written by this writer: written by session s of a@t:1 (pid")
    assert status.end_time is None
    claim.release()
    assert value_of(url, KEY_PREFIX + key) is None
    time.sleep(1.1)  # the status asks Redis at most once a second
    assert status.state == State.OFF and status.end_time is not None and "its claim has ended" in status.reason
    assert isinstance(b.take(key), Claim)


def test_a_file_one_process_writes_is_left_to_it_whichever_scan_asks(url, tmp_path):
    shared, other = str(tmp_path / "dataset.h5"), str(tmp_path / "other.h5")
    a, a2, b = book(url, "session s of a@t:1"), book(url, "x/bliss_writer/s of a@t:1"), book(url, "batch of batch@t:1")
    first, child, third = scan_key(), scan_key(), scan_key()
    held = a.take(first, shared)
    assert isinstance(held, Claim) and value_of(url, FILE_PREFIX + shared) == a.process
    refused = b.take(child, shared)  # e.g. a child of a's sequence, or the next scan of the dataset
    assert isinstance(refused, Refusal) and refused.filename == shared and refused.holder == a.process
    assert value_of(url, KEY_PREFIX + child) is None  # nothing taken
    assert isinstance(b.take(third, other), Claim)  # another file: no conflict
    status = b.claim_for(child, "2_ascan", shared)
    assert f"left to a@t:1 (pid {os.getpid()}" in status.reason and f"writing its file {shared}" in status.reason
    by_a = a2.take(child, shared)  # the process writing the file takes the scan (another of its devices too)
    assert isinstance(by_a, Claim)
    held.release()
    assert value_of(url, FILE_PREFIX + shared) == a.process  # still used by the other scan
    time.sleep(1.1)
    assert status.state == State.ON  # a's process still holds the scan's claim
    by_a.release()
    assert value_of(url, FILE_PREFIX + shared) is None and value_of(url, KEY_PREFIX + child) is None
    time.sleep(1.1)
    assert status.state == State.OFF
    assert isinstance(b.take(scan_key(), shared), Claim)


def test_a_claim_is_refreshed_while_its_driver_runs_and_released_when_it_ends(url, tmp_path):
    key, filename = scan_key(), str(tmp_path / "f.h5")
    a, b = book(url, "a", ttl_s=1.0, refresh_s=0.2), book(url, "b", ttl_s=1.0, refresh_s=0.2)
    driver, claim = FakeDriver(), a.take(key, filename)
    assert run_claimed(claim, lambda: driver) is driver
    for _ in range(3):  # three TTLs
        time.sleep(1.0)
        assert isinstance(b.take(key), Refusal) and isinstance(b.take(scan_key(), filename), Refusal)
    assert claim.refreshes >= 10 and claim.longest_gap_s < 1.0, (claim.refreshes, claim.longest_gap_s)
    driver.done.set()
    time.sleep(0.3)  # the keeper joins the driver: released at once
    assert not a.held and value_of(url, KEY_PREFIX + key) is None and value_of(url, FILE_PREFIX + filename) is None
    assert isinstance(b.take(key, filename), Claim)


def test_a_driver_that_cannot_start_releases_its_claim(url):
    key, owner = scan_key(), book(url, "a")

    def fail():
        raise ValueError("no")

    with pytest.raises(ValueError):
        run_claimed(owner.take(key, "/x/y.h5"), fail)
    assert value_of(url, KEY_PREFIX + key) is None and value_of(url, FILE_PREFIX + "/x/y.h5") is None
    assert not owner.held


def test_a_dead_owners_claim_expires_after_its_ttl(url):
    key = scan_key()
    dead = Holder("a", "another-node", 12345, time.time(), ttl_s=1.0, refresh_s=0.2)  # never refreshed again
    redis.Redis.from_url(url).set(KEY_PREFIX + key, dead.value(), px=1000)
    t0 = time.monotonic()
    b = book(url, "b")
    while isinstance(b.take(key), Refusal):
        assert time.monotonic() - t0 < 1.5
        time.sleep(0.05)
    assert time.monotonic() - t0 > 0.8


def test_refresh_says_when_the_claim_had_expired_or_was_lost(url):
    r, key = redis.Redis.from_url(url), scan_key()
    claim = book(url, "a").take(key, "/d/f.h5")
    assert claim.refresh() and 0 < r.pttl(KEY_PREFIX + key) <= CLAIM_TTL_S * 1000
    r.delete(KEY_PREFIX + key, FILE_PREFIX + "/d/f.h5")
    assert claim.refresh() and Holder.parse(r.get(KEY_PREFIX + key)) == claim.holder  # taken again
    assert r.get(FILE_PREFIX + "/d/f.h5") is not None
    r.set(KEY_PREFIX + key, Holder("b").value())
    assert not claim.refresh()  # lost
    claim.release()
    assert Holder.parse(r.get(KEY_PREFIX + key)).writer == "b"  # never deletes another writer's claim


HOLDER_SCRIPT = """
import sys, threading, time
from nxpar.driver.claims import ClaimBook, Claim
claim = ClaimBook(sys.argv[1], "session s of w@t:1", "w@t:1").take(sys.argv[2], sys.argv[3])
assert isinstance(claim, Claim)
driver = threading.Thread(target=time.sleep, args=(300,), daemon=True)
driver.start()
claim.keep_while(driver)
print("held", flush=True)
time.sleep(300)
"""


def test_the_same_writer_restarted_takes_its_claims_at_once_a_live_sibling_never(url, tmp_path):
    key, filename = scan_key(), str(tmp_path / "f.h5")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, url, key, filename], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "held"
        restarted = book(url, "session s of w@t:1", "w@t:1")
        for _ in range(3):  # alive and refreshed: a sibling (e.g. a second batch run), never taken over
            assert value_of(url, KEY_PREFIX + key).pid == proc.pid == value_of(url, FILE_PREFIX + filename).pid
            assert isinstance(restarted.take(key, filename), Refusal)
            assert isinstance(restarted.take(scan_key(), filename), Refusal)
            time.sleep(REFRESH_PERIOD_S)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert isinstance(book(url, "another writer").take(key), Refusal)  # waits for the TTL
        assert isinstance(book(url, "b of other@t:1").take(scan_key(), filename), Refusal)
        t0 = time.monotonic()
        claim = restarted.take(key, filename)  # the restarted owner: at once, scan and file
        assert isinstance(claim, Claim) and time.monotonic() - t0 < 0.5
        assert value_of(url, KEY_PREFIX + key).pid == os.getpid() == value_of(url, FILE_PREFIX + filename).pid
        claim.release()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_refreshing_a_claim_costs_one_short_round_trip(url):
    """The cost the refresh period was chosen with (docs/claims.md): printed, bounded loosely."""
    claim = book(url, "a").take(scan_key(), "/d/cost.h5")
    n, t0 = 500, time.perf_counter()
    for _ in range(n):
        assert claim.refresh()
    per_call_ms = 1000 * (time.perf_counter() - t0) / n
    claim.release()
    print(f"claim refresh: {per_call_ms:.3f} ms per call")
    assert per_call_ms < 20
