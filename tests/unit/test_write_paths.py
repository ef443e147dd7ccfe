"""The write path and the fsync policy chosen from the environment (nxpar/writers/write_mode.py)."""
from __future__ import annotations

import os

import h5py
import pytest

from nxpar.writers import write_mode
from nxpar.writers.write_mode import SerialWrites, WritePath, fsync_at_every_flush, write_path


@pytest.mark.parametrize("env, writers, expected", [
    ({}, 1, WritePath.DIRECT),
    ({}, 2, WritePath.STORING),
    ({"NXPAR_WRITE_MODE": "storing"}, 8, WritePath.STORING),
    ({"NXPAR_WRITE_MODE": " MPIO "}, 4, WritePath.MPIO),
    ({"NXPAR_SERIAL_DRIVER": "0"}, 1, WritePath.MPIO),
])
def test_the_write_path_follows_the_writer_count_unless_mpi_io_is_asked(env, writers, expected):
    assert write_path(writers, env) is expected


@pytest.mark.parametrize("policy, fsyncs", [(None, 0), ("flush", 1), (" FLUSH", 1), ("close", 0)])
def test_a_flush_fsyncs_the_file_unless_the_policy_leaves_it_to_the_close(tmp_path, monkeypatch, policy, fsyncs):
    if policy is None:
        monkeypatch.delenv("NXPAR_FSYNC", raising=False)
    else:
        monkeypatch.setenv("NXPAR_FSYNC", policy)
    assert fsync_at_every_flush() is bool(fsyncs)
    calls = []
    monkeypatch.setattr(write_mode.os, "fsync", lambda fd: calls.append(fd) or os.fstat(fd))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = [1, 2, 3]
        SerialWrites().flush(f)
    assert len(calls) == fsyncs
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert list(f["x"][()]) == [1, 2, 3]
