"""Resume from Redis: kill -9 of the whole MPI job and of one writer rank during a live scan, under
supervision; the interrupted scan is written again from Redis, equal to what was published
(a short campaign of tests/crash_campaign.py; the README's figures come from its CLI)."""
from __future__ import annotations

import pytest

from tests.crash_campaign import Campaign


@pytest.fixture(scope="module")
def campaign(stack, tmp_path_factory):
    c = Campaign(stack, tmp_path_factory.mktemp("crash"), seed=7)
    yield c
    stack.stop_service(c.instance)


@pytest.mark.parametrize("mode", ["job", "rank"])
def test_an_interrupted_scan_is_written_again_from_redis(campaign, mode):
    trial = campaign.trial({"job": 0, "rank": 1}[mode], mode)
    assert trial.problems == [], trial
    assert trial.b_state == "OFF" and trial.b_complete and trial.interruption_noted, trial
    assert "written again from Redis" in trial.b_reason or trial.b_reason == "Finished succesfully", trial
    assert trial.earlier_intact and trial.next_written, trial
    if mode == "job":
        assert trial.gap_scan_written, trial


def test_a_scan_redis_no_longer_holds_is_marked_failed_with_what_is_missing(stack, data_dir):
    """The job dies, then Redis restarts without persistence: at the restart the journal's scan cannot be
    written again; its file keeps the rows written before, with status FAILED, end_time and the reason."""
    import signal

    import h5py

    from launch.simulate import ScanPublisher, ScanSpec
    from tests.helpers import start_scan, wait_progress, wait_scan_done
    from tests.processes import service_ranks

    url = stack.start_redis(name="redis_gone")
    dev = stack.register("gone", "w_gone")
    env = {"REDIS_DATA_URL": url}
    stack.start_service("w_gone", 3, extra_env=env)
    try:
        proxy = stack.wait_device(dev)
        spec = ScanSpec("gone", str(data_dir / "gone.h5"), 1, 30, image_shape=(16, 16), mca_channels=None)
        pub = start_scan(proxy, url, spec, 8, batch=2)
        wait_progress(proxy, spec.name, "8pts-8pts")
        for p in service_ranks("w_gone").values():
            p.send_signal(signal.SIGKILL)
        stack.stop_service("w_gone")
        stack.stop("redis_gone", timeout=5)
        stack.start_redis(name="redis_gone", port=int(url.rsplit(":", 1)[1]))  # empty
        stack.start_service("w_gone", 3, extra_env=env)
        proxy = stack.wait_device(dev)
        assert wait_scan_done(proxy, spec.name, 30) == "FAULT"
        reason = proxy.scan_state_reason(spec.name)
        assert "no longer in Redis" in reason and "rows written before the interruption" in reason, reason
        with h5py.File(spec.filename, "r", locking=False) as f:
            assert f["1.1/writer/status"][()] == b"FAILED" and f["1.1/end_time"][()]
            assert "no longer in Redis" in f["1.1/writer/failure"][()].decode()
        del pub
        nxt = ScanPublisher(url, ScanSpec("gone", str(data_dir / "next.h5"), 2, 4, image_shape=(8, 8)))
        nxt.run()
        assert wait_scan_done(proxy, nxt.spec.name) == "OFF"
    finally:
        stack.stop_service("w_gone")
        stack.stop("redis_gone")
