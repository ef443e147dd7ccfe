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
        st.start_all(ranks=RANKS)
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
