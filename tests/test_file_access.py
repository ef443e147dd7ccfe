"""Settings that reach HDF5 and MPI-IO (issue 15): parsed from the environment, applied by every
writer rank alike, read back from the open file's access property list and from the file layout."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401
import pytest

from launch.simulate import ScanSpec
from nxpar.writers.file_access import FileAccessSettings, parse_hints, settings_from_env
from tests.helpers import ROOT, run_scan

SETTINGS_ENV = {"NXPAR_ALIGNMENT": "65536", "NXPAR_ALIGNMENT_THRESHOLD": "4096",
                "NXPAR_MPIO_HINTS": "romio_cb_write=enable,cb_nodes=1,cb_buffer_size=1048576,"
                                    "striping_factor=2,striping_unit=65536",
                "NXPAR_COLL_METADATA_OPS": "1", "NXPAR_COLL_METADATA_WRITE": "0",
                "NXPAR_MDC_INITIAL_SIZE": "4194304", "NXPAR_META_BLOCK_SIZE": "65536"}


# -- parsing (pure logic) -----------------------------------------------------------------------------
def test_no_environment_means_hdf5_defaults_and_collective_metadata():
    s = settings_from_env({})
    assert s == FileAccessSettings() and s.problems == ()
    assert (s.alignment_threshold, s.alignment_interval, s.mpio_hints) == (1, 1, ())
    assert s.coll_metadata_ops and s.coll_metadata_write


def test_settings_are_read_from_the_environment():
    s = settings_from_env(SETTINGS_ENV)
    assert s.problems == ()
    assert (s.alignment_threshold, s.alignment_interval) == (4096, 65536)
    assert dict(s.mpio_hints) == {"romio_cb_write": "enable", "cb_nodes": "1", "cb_buffer_size": "1048576",
                                  "striping_factor": "2", "striping_unit": "65536"}
    assert (s.coll_metadata_ops, s.coll_metadata_write) == (True, False)
    assert (s.mdc_initial_size, s.meta_block_size) == (4194304, 65536)
    # the threshold defaults to the interval: smaller objects are not padded to a stripe
    assert settings_from_env({"NXPAR_ALIGNMENT": "4194304"}).alignment_threshold == 4194304


@pytest.mark.parametrize("env, problem", [
    ({"NXPAR_ALIGNMENT": "4MB"}, "NXPAR_ALIGNMENT='4MB' ignored"),
    ({"NXPAR_ALIGNMENT": "-1"}, "not a positive integer"),
    ({"NXPAR_ALIGNMENT": "4096", "NXPAR_ALIGNMENT_THRESHOLD": "x"}, "NXPAR_ALIGNMENT_THRESHOLD='x'"),
    ({"NXPAR_MPIO_HINTS": "romio_cb_write=sometimes"}, "romio_cb_write='sometimes' ignored"),
    ({"NXPAR_MPIO_HINTS": "cb_nodes=0"}, "cb_nodes='0' ignored"),
    ({"NXPAR_MPIO_HINTS": "cb_nodes"}, "expected key=value"),
    ({"NXPAR_COLL_METADATA_WRITE": "maybe"}, "NXPAR_COLL_METADATA_WRITE='maybe' ignored"),
    ({"NXPAR_MDC_INITIAL_SIZE": "big"}, "NXPAR_MDC_INITIAL_SIZE='big' ignored"),
])
def test_invalid_values_are_left_out_with_a_reason(env, problem):
    s = settings_from_env(env)
    assert any(problem in p for p in s.problems), s.problems
    if "THRESHOLD" in problem:  # the interval itself was valid: the threshold falls back to it
        assert (s.alignment_threshold, s.alignment_interval) == (4096, 4096)
        return
    defaults = FileAccessSettings()
    assert (s.alignment_interval, s.mpio_hints, s.mdc_initial_size, s.coll_metadata_write) == (
        defaults.alignment_interval, defaults.mpio_hints, defaults.mdc_initial_size, defaults.coll_metadata_write)


def test_unknown_hints_are_passed_on_and_valid_ones_kept_next_to_invalid_ones():
    problems: list[str] = []
    hints = parse_hints("romio_cb_write=enable cb_nodes=x,romio_lustre_start_iodevice=1", problems)
    assert hints == (("romio_cb_write", "enable"), ("romio_lustre_start_iodevice", "1"))
    assert len(problems) == 1 and "cb_nodes" in problems[0]


# -- what the open file says (real mpirun, real parallel HDF5) -----------------------------------------
def _probe(tmp_path, per_rank_env: list[dict[str, str]]) -> tuple[list[dict], str]:
    """mpirun MPMD: one rank per entry of per_rank_env, each with that extra environment."""
    cmd = ["mpirun"]
    for i, env in enumerate(per_rank_env):
        if i:
            cmd.append(":")
        cmd += ["-n", "1"]
        for k, v in env.items():
            cmd += ["-env", k, v]
        cmd += [sys.executable, "-m", "tests.mpi_file_access_probe", str(tmp_path / "probe.h5")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NXPAR_")} | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    reports = [json.loads((tmp_path / f"probe.h5.rank{rank}.json").read_text()) for rank in range(len(per_rank_env))]
    return reports, out.stdout + out.stderr


def test_every_setting_is_read_back_from_the_open_file(tmp_path):
    reports, logs = _probe(tmp_path, [SETTINGS_ENV, SETTINGS_ENV])
    for r in reports:
        assert r["alignment"] == [4096, 65536]
        hints = r["hints"]
        for key, value in (("romio_cb_write", "enable"), ("cb_nodes", "1"), ("cb_buffer_size", "1048576"),
                           ("striping_factor", "2"), ("striping_unit", "65536")):
            assert hints.get(key) == value, hints
        assert r["coll_metadata"] == [True, False]
        assert r["mdc_initial_size"] == 4194304
        assert r["meta_block_size"] == 65536
        # the file layout: each 180 kB chunk starts on a 64 KiB boundary
        assert len(r["chunk_offsets"]) == 2 and all(o % 65536 == 0 for o in r["chunk_offsets"]), r
    assert "file access: alignment 65536 B for objects >= 4096 B" in logs


def test_without_settings_chunks_are_not_aligned(tmp_path):
    """The control for the test above: the offsets are not multiples of 64 KiB by chance."""
    reports, _ = _probe(tmp_path, [{}, {}])
    for r in reports:
        assert r["alignment"] == [1, 1] and r["coll_metadata"] == [True, True]
        assert any(o % 65536 for o in r["chunk_offsets"]), r


def test_all_writer_ranks_use_the_first_writer_ranks_settings(tmp_path):
    other = {"NXPAR_ALIGNMENT": "8192", "NXPAR_MPIO_HINTS": "romio_cb_write=disable"}
    reports, logs = _probe(tmp_path, [SETTINGS_ENV, other])
    assert [r["alignment"] for r in reports] == [[4096, 65536]] * 2
    assert all(r["hints"].get("romio_cb_write") == "enable" for r in reports)
    assert "this rank's environment asks for other file access settings" in logs


# -- the service: settings logged at start, applied to the scan files ----------------------------------
def test_service_logs_its_settings_and_aligns_the_frames(stack, data_dir):
    env = {"NXPAR_ALIGNMENT": "65536", "NXPAR_ALIGNMENT_THRESHOLD": "1024",  # compressed frames are small
           "NXPAR_MPIO_HINTS": "romio_cb_write=enable,cb_nodes=often"}
    dev = stack.register("aligned", "w_aligned")
    stack.start_service("w_aligned", 3, extra_env=env)
    try:
        proxy = stack.wait_device(dev)
        spec = ScanSpec("aligned", str(data_dir / "aligned.h5"), 1, 6, image_shape=(200, 200), mca_channels=None,
                        chunk_options={"chunk_nbytes": 200 * 200 * 2, "chunk_split": 1})  # a chunk per frame
        run_scan(proxy, stack.env["REDIS_DATA_URL"], spec)
        with h5py.File(spec.filename, "r", locking=False) as f:
            frames = f["1.1/instrument/image/data"]
            offsets = [frames.id.get_chunk_info(i).byte_offset for i in range(frames.id.get_num_chunks())]
        assert len(offsets) == 6 and all(o % 65536 == 0 for o in offsets), offsets
        log = (stack.rundir / "service_w_aligned.log").read_text()
        assert "file access: alignment 65536 B for objects >= 1024 B; MPI-IO hints: romio_cb_write=enable;" in log
        assert "MPI-IO hint cb_nodes='often' ignored" in log
    finally:
        stack.stop_service("w_aligned")
