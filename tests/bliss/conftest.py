"""Fixtures of the real-BLISS tier: one BlissStack (Redis ×2, Tango DB, Beacon, `mpirun -n 3
NexusWriterService`) and one BLISS session process for the whole run, inside the network namespace
that `launch/bliss_tier.sh` (make test-bliss) made. Outside one the tier is skipped, never half-run:
Beacon and BLISS must not meet another run's servers."""
from __future__ import annotations

import os

import pytest

from tests.bliss.bliss_stack import BlissDriver, BlissStack, in_private_netns

RANKS = 3


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NXPAR_BLISS_TIER") == "1" and in_private_netns():
        return
    skip = pytest.mark.skip(reason="real-BLISS tier: run `make test-bliss` (own network namespace)")
    for item in items:
        if "tests/bliss/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def bliss_stack(tmp_path_factory):
    st = BlissStack(tmp_path_factory.mktemp("bliss"))
    try:
        st.start_all(ranks=RANKS, log_level=os.environ.get("NXPAR_TIER_LOG", "INFO"))  # DEBUG: scan phases
        yield st
    finally:
        st.down()


@pytest.fixture(scope="session")
def bliss(bliss_stack):
    """The BLISS session `nxbliss`: `bliss.run(scenario)` runs one function of scenarios.py."""
    driver = BlissDriver(bliss_stack)
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture(scope="session")
def ran(bliss, bliss_stack):
    """`ran(scenario)`: the scans of that scenario of scenarios.py (run once per tier run), each
    waited for until the writer has finished it (scan state OFF or FAULT)."""
    from tests.bliss.expect import BlissScan
    from tests.helpers import wait_scan_done

    done: dict[str, list[BlissScan]] = {}

    def run(scenario: str, expect_states=("OFF",)) -> list[BlissScan]:
        if scenario not in done:
            scans = [BlissScan.load(r) for r in bliss.run(scenario)["scans"]]
            for scan in scans:
                if scan.filename:
                    state = wait_scan_done(bliss_stack.proxy, scan.identifier, timeout=60)
                    assert state in expect_states, bliss_stack.proxy.scan_state_reason(scan.identifier)
            done[scenario] = scans
        return done[scenario]

    return run


def pytest_configure(config):
    config.addinivalue_line("markers", "bliss: the real-BLISS tier (make test-bliss)")
