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
