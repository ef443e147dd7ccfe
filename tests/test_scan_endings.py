"""Every way a scan can end leaves a status, an end time and a reason in its file (issue 21) — one table,
one scan per way, against the real stack (2 writer ranks), the file read back for each."""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Callable

import h5py
import pytest

from launch.simulate import ScanPublisher, ScanSpec
from tests.helpers import wait_progress, wait_scan_done, wait_scan_exists
from tests.processes import service_ranks
from tests.test_integrity import published_as


@dataclass(frozen=True)
class Ending:
    name: str
    provoke: Callable  # (ctx, pub) -> None: publish, and end the scan that way
    state: str  # the scan's state on the device ("" when the service itself is gone)
    status: str  # writer/status in the file
    reason: str  # a part of writer/failure (FAILED) or of end_reason (SUCCEEDED)


@dataclass
class Context:
    proxy: object
    stack: object
    instance: str
    small_fs: object = None


def finish(pub: ScanPublisher, points: int = 12) -> None:
    pub.send(points, batch=2)
    pub.stop_close()


def started(ctx: Context, pub: ScanPublisher, points: int = 6) -> None:
    pub.prepare_start()
    pub.send(points, batch=2)
    wait_progress(ctx.proxy, pub.spec.name, f"{points}pts-{points}pts")


def success(ctx, pub):
    pub.run(batch=2)


def mismatch(ctx, pub):
    published_as(pub, "cam:image", "float32", (16, 16))
    pub.run(batch=2)


def deleted(ctx, pub):
    started(ctx, pub)
    os.unlink(pub.spec.filename)
    finish(pub)


def stale(ctx, pub):
    started(ctx, pub)  # then nothing: the publisher is gone (stale_scan_timeout 5 s)


def stop_scan(ctx, pub):
    started(ctx, pub)
    ctx.proxy.stop_scan(pub.spec.name)


def kill_scan(ctx, pub):
    started(ctx, pub)
    ctx.proxy.kill_scan(pub.spec.name)


def service_signal(sig: int):
    def provoke(ctx, pub):
        started(ctx, pub)
        mpirun = [p for p in service_ranks(ctx.instance).values()][0].parent().parent()  # rank ← proxy ← mpirun
        mpirun.send_signal(sig)
        mpirun.wait(20)
    return provoke


def disk_full(ctx, pub):
    started(ctx, pub)
    free = os.statvfs(ctx.small_fs).f_bavail * os.statvfs(ctx.small_fs).f_frsize
    with open(ctx.small_fs / "other_process.bin", "wb") as fh:  # another process leaves 2 MiB
        fh.write(b"\0" * max(free - (2 << 20), 0))
    finish(pub, 30)


def finalising_fails(ctx, pub):
    pub.info["display_extra"] = 5  # not a dictionary: the plots cannot be made at the end
    pub.run(batch=2)


def skeleton_fails(ctx, pub):
    pub.info["scan_meta_categories"] = ["technique"]
    pub.info["technique"] = {"a b": {"x": 1}, "a_b": 5}  # both are `a_b` in the file: a group and a value
    pub.run(batch=2)


ENDINGS = [
    Ending("success", success, "OFF", "SUCCEEDED", "SUCCESS"),
    Ending("rows not as declared", mismatch, "FAULT", "FAILED", "cam:image: declared uint16"),
    Ending("file deleted", deleted, "FAULT", "FAILED", "was deleted while the scan was being written"),
    Ending("publisher gone", stale, "FAULT", "FAILED", "stale_scan_timeout"),
    Ending("stop_scan", stop_scan, "FAULT", "FAILED", "Stop requested"),
    Ending("kill_scan", kill_scan, "FAULT", "FAILED", "Killed"),
    Ending("SIGTERM", service_signal(signal.SIGTERM), "", "FAILED", "the writer service stopped"),
    Ending("SIGINT", service_signal(signal.SIGINT), "", "FAILED", "the writer service stopped"),
    Ending("disk full by another process", disk_full, "FAULT", "FAILED", "No space left on device"),
    Ending("error while finalising", finalising_fails, "FAULT", "FAILED", "finalising failed"),
    Ending("error in the skeleton", skeleton_fails, "FAULT", "FAILED", "a_b"),
]
OWN_SERVICE = {"SIGTERM", "SIGINT"}


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("ending", ENDINGS, ids=[e.name for e in ENDINGS])
def test_every_way_a_scan_ends_is_written_in_its_file(ending, services, stack, data_dir, small_fs):
    nb = ENDINGS.index(ending) + 1
    if ending.name in OWN_SERVICE:
        instance, session = f"w_end{nb}", f"end{nb}"
        devname = stack.register(session, instance, stale_scan_timeout=5, required_disk_space=0,
                                 recommended_disk_space=0)
        stack.start_service(instance, 3, "INFO")
        proxy = stack.wait_device(devname)
    else:
        instance, session = "w_endings", "endings"
        proxy = services.get(3, (session,), stale_scan_timeout=5, required_disk_space=0, recommended_disk_space=0)[session]
    directory = small_fs if ending.name == "disk full by another process" else data_dir
    spec = ScanSpec(session, str(directory / "ending.h5"), nb, 40, image_shape=(16, 16), mca_channels=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    wait_scan_exists(proxy, spec.name)
    try:
        ending.provoke(Context(proxy, stack, instance, small_fs), pub)
        if ending.state:
            assert wait_scan_done(proxy, spec.name, 60) == ending.state, proxy.scan_state_reason(spec.name)
    finally:
        if ending.name in OWN_SERVICE:
            stack.stop_service(instance)
    with h5py.File(spec.filename, "r", locking=False) as f:
        e = f[f"{nb}.1"]
        assert e["writer/status"][()].decode() == ending.status
        assert e["end_time"][()]
        said = e["writer/failure" if ending.status == "FAILED" else "end_reason"][()].decode()
        assert ending.reason in said, said
