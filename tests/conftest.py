"""Fixtures: the REAL embedded stack (Redis + RediSearch/ReJSON, Tango DB, mpirun services).

One Redis and one Tango database for the whole run; one `mpirun -n N NexusWriterService` per
rank count, started on first use and stopped by PID at the end. Functions the tests share are in
tests/helpers.py (this file is never imported as a module). Test tiers (markers, pyproject.toml):
a test that uses these fixtures is marked `integration` here; `mpi` tests run only under mpirun.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launch.stack import Stack  # noqa: E402

SERVER_FIXTURES = {"stack", "services"}
UNDER_MPIRUN = "PMI_RANK" in os.environ or "OMPI_COMM_WORLD_RANK" in os.environ


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    """Tests that need the servers are `integration`; `mpi` tests are skipped outside mpirun and
    everything else is skipped under it (each rank would start its own servers)."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        is_mpi = item.get_closest_marker("mpi") is not None
        if is_mpi and not UNDER_MPIRUN:
            item.add_marker(pytest.mark.skip(reason="an mpi test: run it with mpirun -n 3 python -m pytest -m mpi"))
        elif not is_mpi and UNDER_MPIRUN:
            item.add_marker(pytest.mark.skip(reason="under mpirun only the mpi tests run"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("stack"))
    try:
        st.start_redis()
        st.start_tango_db()
        os.environ.update(st.env)
        yield st
    finally:
        st.down()


class Services:
    """Starts one writer service per (ranks, sessions) and keeps it for the run."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started: dict[str, dict[str, str]] = {}

    def get(self, ranks: int, sessions: tuple[str, ...] | None = None, extra_env: dict | None = None,
            **props) -> dict[str, "object"]:

        sessions = sessions or (f"n{ranks}",)
        instance = "w_" + "_".join(sessions)
        if instance not in self.started:
            devices = {s: self.stack.register(s, instance, **props) for s in sessions}
            self.stack.start_service(instance, ranks, "INFO", extra_env=extra_env)
            self.started[instance] = devices
        devices = self.started[instance]
        return {s: self.stack.wait_device(d) for s, d in devices.items()} | {"_names": devices}


@pytest.fixture(scope="session")
def services(stack):
    return Services(stack)


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path
