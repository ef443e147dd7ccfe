"""One writer per scan (issue 22, item 3), end to end on the real stack: a NexusWriterService and a
NexusWriterBatch under mpirun, or two services, on one Redis and asked for the same scans write each scan
once, and never open one file at once (a scan is left to the writer of its file); the other one says at
INFO who owns it and touches nothing. An owner killed (kill -9 of its job): its restart takes its scans
again at once, another writer only after the claim's TTL. A busy rank 0 keeps its claims."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import h5py
import psutil
import redis
import tango

from launch.simulate import ScanPublisher, ScanSpec
from nxpar.driver.claim_values import CLAIM_TTL_S, REFRESH_PERIOD_S, Holder
from nxpar.driver.claims import FILE_PREFIX, KEY_PREFIX
from nxpar.service.register import register
from tests.helpers import assert_file_matches, start_scan, wait_progress, wait_scan_done, wait_scan_exists
from tests.processes import service_ranks
from tests.test_batch import batch_cmd, batch_env

NPOINTS = 12


def holder_of(url: str, redis_key: str) -> Holder | None:
    raw = redis.Redis.from_url(url).get(redis_key)
    return None if raw is None else Holder.parse(raw)


def holder(url: str, scan_key: str) -> Holder | None:
    return holder_of(url, KEY_PREFIX + scan_key)


def service_log(stack, instance: str) -> str:
    return (stack.rundir / f"service_{instance}.log").read_text(errors="replace")


def wait_for(what: str, ready, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"{what} not seen after {timeout} s"
        time.sleep(0.1)


def publish(url: str, proxies, spec: ScanSpec) -> ScanPublisher:
    """A whole scan published as BLISS does: each device must register it within 10 s (BLISS's check)."""
    pub = start_scan(proxies[0], url, spec)
    for proxy in proxies[1:]:
        wait_scan_exists(proxy, spec.name)
    pub.send(NPOINTS, batch=3)
    pub.stop_close()
    return pub


def create_while_paused(url: str, spec: ScanSpec, pid: int, what: str, done) -> ScanPublisher:
    """The scan created while one writer's rank 0 is stopped (SIGSTOP) until done(pub): the other writer
    sees it first, whatever the race. Briefly: a stopped owner does not refresh its claims."""
    os.kill(pid, signal.SIGSTOP)
    try:
        pub = ScanPublisher(url, spec)
        wait_for(what, lambda: done(pub), 30)
    finally:
        os.kill(pid, signal.SIGCONT)
    return pub


def run(pubs: list[ScanPublisher], proxy) -> None:
    """The scans published as BLISS does (together): the device must register each within 10 s."""
    for pub in pubs:
        wait_scan_exists(proxy, pub.spec.name)
        pub.prepare_start()
    for pub in pubs:
        pub.send(NPOINTS, batch=3)
    for pub in pubs:
        pub.stop_close()


def spec(session: str, folder, nb: int, npoints: int = NPOINTS, filename: str = "") -> ScanSpec:
    return ScanSpec(session, filename or str(folder / f"{session}_{nb}.h5"), nb, npoints, image_shape=(16, 16),
                    mca_channels=None)


def left_alone_line(writer: str, pub: ScanPublisher, why: str) -> str:
    return f"{writer}: scan {pub.spec.name} ({pub.scan.key}) not written here: {why}"


def start_batch(url: str, session: str, folder, *args: str) -> subprocess.Popen:
    out = open(folder / "batch.log", "a")
    return subprocess.Popen(batch_cmd(url, "--session", session, *args, ranks=2), stdout=out,
                            stderr=subprocess.STDOUT, env=batch_env(folder / "state"), start_new_session=True)


def batch_rank0(proc: subprocess.Popen) -> int:
    for child in psutil.Process(proc.pid).children(recursive=True):
        if child.environ().get("PMI_RANK") == "0" and "nxpar.service.batch" in " ".join(child.cmdline()):
            return child.pid
    raise AssertionError("no rank 0 in the batch job")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def publish_the_mix(url: str, proxy, names: dict[str, str], folder, pids: dict[str, int]) -> list[ScanPublisher]:
    """1, 2: either may win, one after the other into one dataset file; 3: the batch takes it (the service
    paused); 4 and 5 at once into one file (a sequence and its child): the service owns 4 (the batch
    paused), so 5 is left to it even though the batch sees 5 first (the service paused)."""
    session, dataset, sequence = "cl_mix", str(folder / "dataset.h5"), str(folder / "sequence.h5")
    pubs = [publish(url, [proxy], spec(session, folder, nb, filename=dataset)) for nb in (1, 2)]
    wait_for("1, 2 released", lambda: all(holder(url, p.scan.key) is None for p in pubs))
    log = folder / "batch.log"
    third = create_while_paused(url, spec(session, folder, 3, filename=dataset), pids["service"], "the batch's claim",
                                lambda p: f"batch: writing scan 3_ascan ({p.scan.key})" in log.read_text())
    run([third], proxy)
    fourth = create_while_paused(url, spec(session, folder, 4, filename=sequence), pids["batch"], "the service's claim",
                                 lambda p: getattr(holder(url, p.scan.key), "writer", "") == names["service"])
    fifth = create_while_paused(url, spec(session, folder, 5, filename=sequence), pids["service"], "the batch leaving it",
                                lambda p: left_alone_line(names["batch"], p, "left to ") in log.read_text())
    run([fourth, fifth], proxy)
    return pubs + [third, fourth, fifth]


def test_a_service_and_a_batch_on_one_redis_write_each_scan_once(stack, tmp_path):
    url, session, instance = stack.env["REDIS_DATA_URL"], "cl_mix", "w_cl_mix"
    names = {"service": f"session {session} of {instance}@{stack.env['TANGO_HOST']}",
             "batch": f"batch of batch@{stack.env['TANGO_HOST']}"}
    dev = stack.register(session, instance)
    stack.start_service(instance, 2)
    proc = None
    try:
        proxy = stack.wait_device(dev)
        proc = start_batch(url, session, tmp_path)
        wait_for("the batch run", lambda: f"writing session '{session}' scans" in (tmp_path / "batch.log").read_text())
        pids = {"service": service_ranks(instance)[0].pid, "batch": batch_rank0(proc)}
        pubs = publish_the_mix(url, proxy, names, tmp_path, pids)
        for pub in pubs:
            assert wait_scan_done(proxy, pub.spec.name) == "OFF", proxy.scan_state_reason(pub.spec.name)
        reasons = {pub.spec.name: proxy.scan_state_reason(pub.spec.name) for pub in pubs}
        wait_for("every claim released", lambda: all(holder(url, p.scan.key) is None for p in pubs))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        stack.stop_service(instance)
        if proc is not None:
            stop(proc)
    check_the_mix(pubs, reasons, names, (tmp_path / "batch.log").read_text(), service_log(stack, instance))


def check_the_mix(pubs, reasons: dict[str, str], names: dict[str, str], batch_log: str, served: str) -> None:
    assert ", 0 FAULT" in batch_log
    by_batch = []
    for pub in pubs:
        service_left_it = left_alone_line(names["service"], pub, "") in served  # the scan's or its file's owner
        batch_left_it = left_alone_line(names["batch"], pub, "") in batch_log
        assert service_left_it != batch_left_it, pub.spec.name  # one owner, the other says who at INFO
        assert (f"batch: writing scan {pub.spec.name}" in batch_log) == service_left_it
        reason = reasons[pub.spec.name]
        batch = names["batch"].rpartition(" of ")[2]
        assert reason == "Finished succesfully" if batch_left_it else (
            reason.startswith("not written by this writer: ") and f"{batch} (pid" in reason), reason
        assert_file_matches(pub, NPOINTS)  # every stream as published, status SUCCEEDED
        if service_left_it:
            by_batch.append(pub.spec.scan_nb)
    assert 3 in by_batch and 4 not in by_batch and 5 not in by_batch, by_batch
    fifth = pubs[4]
    service = names["service"].rpartition(" of ")[2]
    assert left_alone_line(names["batch"], fifth, f"left to {service} (pid") in batch_log
    assert f"which is writing its file {fifth.spec.filename}" in batch_log
    for filename, entries in ((pubs[0].spec.filename, ["1.1", "2.1", "3.1"]), (fifth.spec.filename, ["4.1", "5.1"])):
        with h5py.File(filename, "r", locking=False) as f:
            assert sorted(f) == entries
    print(f"scans written by the batch: {by_batch}, the others by the service")


def test_two_services_of_one_session_on_one_redis_write_each_scan_once(stack, tmp_path):
    url, session = stack.env["REDIS_DATA_URL"], "cl_two"
    host, port = stack.env["TANGO_HOST"].split(":")
    devs = {"w_cl_two_a": stack.register(session, "w_cl_two_a"),
            "w_cl_two_b": register(session, instance="w_cl_two_b", member=f"{session}_b", use_existing=False,
                                   db=tango.Database(host, int(port)))}
    for instance in devs:
        stack.start_service(instance, 2)
    try:
        proxies = {i: stack.wait_device(d) for i, d in devs.items()}
        pubs = [publish(url, list(proxies.values()), spec(session, tmp_path, nb)) for nb in range(1, 4)]
        for pub in pubs:
            states = {i: wait_scan_done(p, pub.spec.name) for i, p in proxies.items()}
            assert set(states.values()) == {"OFF"}, states
        reasons = {pub.spec.name: {i: p.scan_state_reason(pub.spec.name) for i, p in proxies.items()} for pub in pubs}
    finally:
        for instance in devs:
            stack.stop_service(instance)
    writer = {i: f"session {session} of {i}@{stack.env['TANGO_HOST']}" for i in devs}
    for pub in pubs:
        owners = [i for i, r in reasons[pub.spec.name].items() if r == "Finished succesfully"]
        assert len(owners) == 1, reasons
        (other,) = set(devs) - set(owners)
        assert reasons[pub.spec.name][other].startswith(f"not written by this writer: written by {writer[owners[0]]}")
        assert left_alone_line(writer[other], pub, f"written by {writer[owners[0]]}") in service_log(stack, other)
        assert_file_matches(pub, NPOINTS)  # every stream as published, status SUCCEEDED


def close_left_open(pubs: list[ScanPublisher]) -> None:
    """A failed test closes the scans it left open (their stream threads would keep pytest alive)."""
    for pub in pubs:
        if pub.scan.state.name != "CLOSED":
            try:
                pub.stop_close("FAILURE")
            except Exception:
                pass


def kill_job(stack, instance: str) -> int:
    """kill -9 of every rank of the service's job; the pid rank 0 had."""
    ranks = service_ranks(instance)
    for p in ranks.values():
        p.send_signal(signal.SIGKILL)
    stack.stop_service(instance)
    return ranks[0].pid


def test_a_killed_owners_scans_are_taken_by_its_restart_at_once_by_another_writer_after_the_ttl(stack, tmp_path):
    url, session, instance = stack.env["REDIS_DATA_URL"], "cl_kill", "w_cl_kill"
    owner = f"session {session} of {instance}@{stack.env['TANGO_HOST']}"
    dev = stack.register(session, instance)
    stack.start_service(instance, 2)
    pubs: list[ScanPublisher] = []
    try:
        proxy = stack.wait_device(dev)
        first = start_scan(proxy, url, spec(session, tmp_path, 1, 30), 8, batch=2)
        pubs.append(first)
        wait_progress(proxy, first.spec.name, "8pts-8pts")
        old_pid = kill_job(stack, instance)
        dead = holder(url, first.scan.key)
        assert dead is not None and dead.writer == owner and dead.pid == old_pid, dead
        # however slow this machine restarts the service: the dead owner's claims are kept as they are meanwhile
        file_key = FILE_PREFIX + first.spec.filename
        dead_process = holder_of(url, file_key)
        assert dead_process.writer == owner.rpartition(" of ")[2] and dead_process.pid == old_pid
        for key in (KEY_PREFIX + first.scan.key, file_key):
            redis.Redis.from_url(url).pexpire(key, 300_000)
        written = os.stat(first.spec.filename)
        run = subprocess.run(batch_cmd(url, "--session", session, "--existing", "--once", ranks=2), capture_output=True,
                             text=True, env=batch_env(tmp_path / "state"), timeout=180)
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-4000:]
        assert left_alone_line(f"batch of batch@{stack.env['TANGO_HOST']}", first, f"written by {owner}") in log
        after = os.stat(first.spec.filename)
        assert (after.st_mtime_ns, after.st_size) == (written.st_mtime_ns, written.st_size)  # nothing touched

        stack.start_service(instance, 2)  # the restarted owner: at once
        proxy = stack.wait_device(dev)
        for key, previous in ((KEY_PREFIX + first.scan.key, dead), (file_key, dead_process)):
            wait_for("the take-over", lambda: f"claim {key} of {previous.describe()} taken over" in service_log(stack, instance))
        first.send(22, batch=2)
        first.stop_close()
        assert wait_scan_done(proxy, first.spec.name) == "OFF", proxy.scan_state_reason(first.spec.name)
        assert_file_matches(first, 30)
        with h5py.File(first.spec.filename, "r", locking=False) as f:
            assert "written again from Redis" in f["1.1/writer/interruption"][()].decode()

        second = start_scan(proxy, url, spec(session, tmp_path, 2, 30), 8, batch=2)
        pubs.append(second)
        wait_progress(proxy, second.spec.name, "8pts-8pts")
        kill_job(stack, instance)
        t_kill = time.monotonic()
        assert holder(url, second.scan.key).writer == owner
        wait_for("the claim's expiry", lambda: holder(url, second.scan.key) is None, CLAIM_TTL_S + 2)
        expired_after = time.monotonic() - t_kill
        assert expired_after > CLAIM_TTL_S - REFRESH_PERIOD_S - 1, expired_after  # kept for its TTL
        second.send(22, batch=2)
        second.stop_close()
    finally:
        stack.stop_service(instance)
        close_left_open(pubs)
    for pub in (first, second):  # the batch re-writes scans still in Redis into new files
        shutil.move(pub.spec.filename, tmp_path / f"old_{pub.spec.scan_nb}.h5")
    run = subprocess.run(batch_cmd(url, "--session", session, "--existing", "--once", ranks=2), capture_output=True,
                         text=True, env=batch_env(tmp_path / "state"), timeout=180)
    log = run.stdout + run.stderr
    assert run.returncode == 0 and f"batch: writing scan {second.spec.name} ({second.scan.key})" in log, log[-4000:]
    assert_file_matches(second, 30)


def test_a_busy_rank_0_keeps_its_claims(stack, tmp_path):
    """The margin the TTL was chosen with (docs/claims.md): a service of 3 ranks writing 4 image scans at
    once refreshes every claim on time; each scan's DEBUG line gives the longest gap and slowest refresh."""
    url, session, instance = stack.env["REDIS_DATA_URL"], "cl_busy", "w_cl_busy"
    dev = stack.register(session, instance)
    stack.start_service(instance, 3, "DEBUG")
    try:
        proxy = stack.wait_device(dev)
        pubs = []
        for nb in range(1, 5):
            pubs.append(ScanPublisher(url, ScanSpec(session, str(tmp_path / f"busy{nb}.h5"), nb, 600,
                                                    image_shape=(256, 256), mca_channels=128)))
            wait_scan_exists(proxy, pubs[-1].spec.name)
        threads = [threading.Thread(target=p.run, kwargs={"batch": 5, "rate_hz": 100}) for p in pubs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for pub in pubs:
            assert wait_scan_done(proxy, pub.spec.name, 300) == "OFF", proxy.scan_state_reason(pub.spec.name)
        wait_for("every claim released", lambda: all(holder(url, p.scan.key) is None for p in pubs))
    finally:
        stack.stop_service(instance)
    lines = [line for line in service_log(stack, instance).splitlines() if "nxpar.claims: claim" in line]
    gaps = [float(re.search(r"longest gap ([\d.]+) s", line).group(1)) for line in lines if "released" in line]
    slowest = [float(re.search(r"slowest refresh ([\d.]+) ms", line).group(1)) for line in lines if "released" in line]
    print(f"claims: longest gap {max(gaps):.2f} s (refresh period {REFRESH_PERIOD_S} s), slowest refresh "
          f"{max(slowest):.1f} ms, TTL {CLAIM_TTL_S} s")
    assert len(gaps) == len(pubs) and max(gaps) < CLAIM_TTL_S - 2 * REFRESH_PERIOD_S, lines
    assert not [line for line in lines if "lost" in line or "expired" in line or "not refreshed" in line]
