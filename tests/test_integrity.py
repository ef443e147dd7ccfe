"""Trust in the data (issue 21): what arrives is checked against what was declared, the file written is
checked to be the file at its path, and a scan whose publisher is gone does not hang. Each probe ends
FAULT with a reason naming what is wrong and a file that says FAILED with end_time, never OFF."""
from __future__ import annotations

import os
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from blissdata.streams.encoding.numeric import NumericStreamEncoder

from launch.simulate import ScanPublisher, ScanSpec
from tests.helpers import PATHS, wait_progress, wait_scan_done, wait_scan_exists

SHAPE = (32, 32)


@pytest.fixture(scope="module", params=[3, 2], ids=["2-writers", "1-writer"])
def probe(request, services):
    """A device with stale_scan_timeout=5 s, on a service with 2 writer ranks or 1 (the direct path)."""
    ranks = request.param
    session = f"integrity{ranks}"
    return services.get(ranks, (session,), stale_scan_timeout=5)[session], session


def published_as(pub: ScanPublisher, stream: str, dtype: str, shape: tuple[int, ...]) -> None:
    """From now on `stream` sends rows of another dtype/shape than it declared (BLISS's encoder would
    refuse them: a broken or foreign publisher)."""
    pub.streams[stream].event_stream._encoder = NumericStreamEncoder(dtype, shape)
    real = pub.expected

    def expected(name: str, n: int, start: int = 0):
        values = real(name, n, start)
        if name == stream:
            return np.resize(values, (len(values),) + shape).astype(dtype)
        return values
    pub.expected = expected


def assert_file_failed(filename: str, entry: str, reason_part: str) -> h5py.File:
    with h5py.File(filename, "r", locking=False) as f:
        assert f[f"{entry}/writer/status"][()] == b"FAILED"
        assert reason_part in f[f"{entry}/writer/failure"][()].decode()
        assert f[f"{entry}/end_time"][()]


@pytest.mark.parametrize("nb,dtype,shape,arrived", [(1, "float32", SHAPE, "4096 bytes a point"),
                                                    (2, "uint16", (64, 64), "8192 bytes a point"),
                                                    (3, "uint16", (16, 16), "512 bytes a point")],
                         ids=["float32-into-uint16", "bigger-frames", "smaller-frames"])
def test_rows_not_as_declared_fault_the_scan_and_the_other_streams_are_written(probe, stack, data_dir, nb, dtype,
                                                                               shape, arrived):
    proxy, session = probe
    spec = ScanSpec(session, str(data_dir / "mismatch.h5"), nb, 20, image_shape=SHAPE, mca_channels=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    published_as(pub, "cam:image", dtype, shape)
    wait_scan_exists(proxy, spec.name)
    pub.run(batch=2)
    assert wait_scan_done(proxy, spec.name) == "FAULT"
    reason = proxy.scan_state_reason(spec.name)
    assert "cam:image: declared uint16 (32, 32) (2048 bytes a point)" in reason and arrived in reason, reason
    assert "Redis restarted" not in reason
    assert_file_failed(spec.filename, f"{nb}.1", "cam:image: declared uint16")
    with h5py.File(spec.filename, "r", locking=False) as f:
        e = f[f"{nb}.1"]
        assert "instrument/image/data" not in e  # nothing written as frames
        for stream in ("axis:robx", "timer:elapsed_time", "diode_ctrl:diode"):  # the others are all there
            np.testing.assert_array_equal(e[PATHS[stream]][()], pub.expected(stream, 20))


def test_a_file_deleted_while_written_faults_the_scan_and_the_path_says_failed(probe, stack, data_dir):
    proxy, session = probe
    spec = ScanSpec(session, str(data_dir / "deleted.h5"), 10, 40, image_shape=SHAPE, mca_channels=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    wait_scan_exists(proxy, spec.name)
    pub.prepare_start()
    pub.send(10, batch=2)
    wait_progress(proxy, spec.name, "10pts-10pts")
    os.unlink(spec.filename)
    pub.send(30, batch=2)
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name, 30) == "FAULT"
    reason = proxy.scan_state_reason(spec.name)
    assert "was deleted while the scan was being written" in reason, reason
    assert_file_failed(spec.filename, "10.1", "was deleted while the scan was being written")


def test_a_file_replaced_while_written_faults_the_scan_and_the_new_file_is_left_alone(probe, stack, data_dir):
    proxy, session = probe
    spec = ScanSpec(session, str(data_dir / "replaced.h5"), 11, 40, image_shape=SHAPE, mca_channels=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    wait_scan_exists(proxy, spec.name)
    pub.prepare_start()
    pub.send(10, batch=2)
    wait_progress(proxy, spec.name, "10pts-10pts")
    os.rename(spec.filename, spec.filename + ".moved")
    with h5py.File(spec.filename, "w") as f:  # someone else's file now
        f["mine"] = 1
    pub.send(30, batch=2)
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name, 30) == "FAULT"
    assert "was replaced by another file" in proxy.scan_state_reason(spec.name)
    with h5py.File(spec.filename, "r", locking=False) as f:
        assert list(f) == ["mine"]


def test_a_scan_whose_publisher_died_ends_failed_after_the_stale_timeout(probe, stack, data_dir):
    proxy, session = probe
    spec = ScanSpec(session, str(data_dir / "stale.h5"), 20, 40, image_shape=SHAPE, mca_channels=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    wait_scan_exists(proxy, spec.name)
    pub.prepare_start()
    pub.send(6, batch=2)  # then the publisher is gone: no more data, never closed
    t0 = time.monotonic()
    assert wait_scan_done(proxy, spec.name, 60) == "FAULT"
    assert 5 <= time.monotonic() - t0 < 30
    reason = proxy.scan_state_reason(spec.name)
    assert "stale_scan_timeout" in reason and "publisher is gone" in reason, reason
    assert_file_failed(spec.filename, "20.1", "stale_scan_timeout")
    with h5py.File(spec.filename, "r", locking=False) as f:
        np.testing.assert_array_equal(f["20.1/instrument/image/data"][()], pub.expected("cam:image", 6))
    assert str(proxy.State()) == "ON"  # the scan's thread is gone: the device is not RUNNING any more


def test_a_new_scan_file_is_readable_from_the_moment_it_exists(probe, stack, data_dir):
    """Issue 22: a reader opening the file as soon as it appears must not meet 'file signature not found'."""
    proxy, session = probe
    spec = ScanSpec(session, str(data_dir / "readable.h5"), 30, 4, image_shape=SHAPE, mca_channels=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    wait_scan_exists(proxy, spec.name)
    pub.prepare_start()
    deadline = time.monotonic() + 20
    while not os.path.exists(spec.filename):
        assert time.monotonic() < deadline, "the scan file was never created"
        time.sleep(0.001)
    with h5py.File(spec.filename, "r", locking=False) as f:  # at once: the superblock is there
        assert f.id.valid
    pub.send(4)
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name) == "OFF", proxy.scan_state_reason(spec.name)
