"""`make bench-scaling` (perf/scaling.py, perf/stage_costs.py): the projection's arithmetic, and a very
small real run of the script so that it keeps working (the figures themselves are in perf/SCALING.md)."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest

from perf.stage_costs import GB, StageCosts, project
from tests.helpers import ROOT


def _costs(**over) -> StageCosts:
    values = dict(scheme="lz4-bitshuffle", frame_nbytes=2 * 1024**2, redis_read_client=0.5, redis_read_server=0.25,
                  redis_publish_server=0.25, decode=0.1, filter=1.0, hdf5_write=0.3,
                  agreement_per_step=0.0016, rank0_per_step=0.004, service_writer_per_gb=4.0)
    return StageCosts(**(values | over))


def test_a_writer_pays_every_stage_and_its_share_of_the_steps():
    c = _costs()
    steps_per_gb = GB / (8 * c.frame_nbytes)  # 8 frames per writer and step
    assert math.isclose(c.agreement_per_gb(4), 0.0016 * steps_per_gb)
    assert math.isclose(c.writer_per_gb(4), 0.5 + 0.1 + 1.0 + 0.3 + 0.0016 * steps_per_gb)
    assert math.isclose(c.rank0_per_gb(4), 0.004 * steps_per_gb / 4)  # one step serves all writers


def test_the_projection_is_the_tightest_limit():
    c = _costs()
    p8 = project(c, 8, live=False)
    assert math.isclose(p8["writers (stages)"], 7 / c.writer_per_gb(7) * 1024)
    assert math.isclose(p8["writers (service)"], 7 / 4.0 * 1024)
    assert math.isclose(p8["redis server"], 1 / 0.25 * 1024)
    assert math.isclose(p8["projected (service)"], min(7 / 4.0, 4.0, 1 / c.rank0_per_gb(7)) * 1024)
    p16_live = project(c, 16, live=True)
    assert math.isclose(p16_live["redis server"], 1 / 0.5 * 1024)  # publishing loads the same Redis core
    assert p16_live["projected (stages)"] == p16_live["redis server"]  # 15 writers outrun one Redis core


@pytest.mark.integration  # perf.scaling starts the embedded stack and services
def test_a_very_small_scaling_run_writes_its_tables(tmp_path):
    cmd = [sys.executable, "-m", "perf.scaling", "--frames", "16", "--shape", "64", "64", "--max-writers", "1",
           "--repeat", "1", "--compression", "lz4-bitshuffle", "--modes", "drain", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    md = (tmp_path / "scaling.md").read_text()
    row = re.search(r"^\| drain \| 1 \(2\) \| (\d+) \(", md, re.M)
    assert row and int(row.group(1)) > 0, md
    for stage in ("Redis read, writer side", "decode", "filter (lz4-bitshuffle)", "HDF5 write",
                  "collective agreement", "rank-0 work"):
        value = re.search(rf"^\| {re.escape(stage)}[^|]* \| ([\d.]+) \|", md, re.M)
        assert value and float(value.group(1)) >= 0, stage
    for cores in (8, 16):
        assert re.search(rf"^\| {cores} \| {cores - 1} \| drain \| .*\*\*\d+ … \d+\*\* \|$", md, re.M), md
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [r["state"] for r in runs if "state" in r] == ["OFF"]
    assert runs[0]["baselines"]["h5py-serial"] > 0
