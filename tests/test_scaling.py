"""`make bench-scaling` (perf/scenarios/scaling.py, perf/model.py, perf/core/box.py): the model's and the
emulated box's arithmetic, and a very small real run of the benchmark so that it keeps working (the
figures themselves are in perf/SCALING.md, generated from perf/results/)."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from nxpar.protocol.options import Tuning
from perf.core.box import EmulatedBox, Role, SliceSpec
from perf.core.results import Document
from perf.model import GIB, StageCosts, frames_per_step, project
from tests.helpers import ROOT

MIB = 2**20


def _costs(**over) -> StageCosts:
    values = dict(scheme="lz4-bitshuffle", frame_nbytes=2 * MIB, redis_read_client=0.5, redis_read_server=0.25,
                  redis_publish_server=0.25, decode=0.1, filter=1.0, hdf5_write=0.3,
                  agreement_per_step=0.0016, rank0_per_step=0.004)
    return StageCosts(**(values | over))


def test_steps_follow_nxpars_own_step_budget():
    assert frames_per_step(2 * MIB) == Tuning().step_bytes_per_writer // (2 * MIB) == 8
    assert frames_per_step(64 * MIB) == 1  # a frame bigger than the budget: one per step
    assert frames_per_step(8192) == Tuning().step_bytes_per_writer // 8192


def test_a_writer_pays_every_stage_and_its_share_of_the_steps():
    c = _costs()
    steps_per_gib = GIB / (frames_per_step(c.frame_nbytes) * c.frame_nbytes)
    assert math.isclose(c.agreement_per_gib(), 0.0016 * steps_per_gib)
    assert math.isclose(c.writer_per_gib(), 0.5 + 0.1 + 1.0 + 0.3 + 0.0016 * steps_per_gib)
    assert math.isclose(c.rank0_per_gib(4), 0.004 * steps_per_gib / 4)  # one step serves all writers


def test_the_projection_is_the_tightest_limit():
    c = _costs()
    p8 = project(c, 8, live=False)
    assert math.isclose(p8["writers (stages)"], 7 / c.writer_per_gib() * 1024)
    assert math.isclose(p8["redis server"], 1 / 0.25 * 1024)
    assert math.isclose(p8["projected (stages)"], min(7 / c.writer_per_gib(), 4.0, 1 / c.rank0_per_gib(7)) * 1024)
    p16_live = project(c, 16, live=True)
    assert math.isclose(p16_live["redis server"], 1 / 0.5 * 1024)  # publishing loads the same Redis thread
    assert p16_live["projected (stages)"] == p16_live["redis server"]  # 15 writers outrun one Redis thread
    assert project(_costs(rank0_per_step=0.0), 4, False)["rank 0"] == math.inf  # not measured: no limit


def test_an_emulated_box_gives_every_rank_one_core_and_fits_its_budget():
    box = EmulatedBox.fitting(16, budget=1.8)
    spec = box.slices()
    assert box.writers == 15 and box.writer_counts() == [1, 2, 4, 8, 15]
    assert spec.quota(Role.RANK0) == spec.quota(Role.WRITER) == spec.quota(Role.BASELINE) == box.core
    assert spec.quota(Role.PUBLISHER) == 2 * box.core and spec.quota(Role.REDIS) == box.core
    assert spec.total(box.writers, live=True) <= 1.8 < spec.total(box.writers, live=True) + 19 * 0.005
    assert EmulatedBox(4, 0.25).writer_counts() == [1, 2, 3]


def test_slices_are_parsed_from_a_box_or_by_role():
    assert SliceSpec.parse("8x0.2") == EmulatedBox(8, 0.2).slices()
    spec = SliceSpec.parse("publisher=0.4,redis=0.3,rank0=0.2,writer=0.2,period=10")
    assert (spec.publisher, spec.redis, spec.rank0, spec.writer, spec.baseline) == (0.4, 0.3, 0.2, 0.2, 0.2)
    assert spec.period_us == 10_000 and spec.quota_us(Role.WRITER) == 2000
    assert SliceSpec.parse("writer=0.01").quota_us(Role.WRITER) == 1000  # the kernel's minimum quota
    with pytest.raises(ValueError):
        SliceSpec.parse("writers=0.2")


@pytest.mark.integration  # the embedded stack, services, CPU slices when this machine allows them
def test_a_very_small_scaling_run_writes_its_json_and_tables(tmp_path):
    from perf.core.slices import CPU, unavailable

    sliced = not unavailable()
    box = ["--boxes", "4", "--core", "0.3"] if sliced else ["--real"]
    out = tmp_path / "scaling.json"
    cmd = [sys.executable, "-m", "perf", "scaling", *box, "--writers", "1", "2", "--compression", "lz4-bitshuffle",
           "--shape", "128", "128", "--seconds", "0.5", "--max-mb", "4", "--json", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    doc = Document.load(out)
    scans = doc.of("scan")
    assert {(s["mode"], s["writers"]) for s in scans} == {("drain", 1), ("drain", 2), ("live", 1), ("live", 2)}
    assert all(s["state"] == "OFF" and s["mb_per_s"] > 0 for s in scans)
    assert all(set(s["use"]) == {"publisher", "redis", "rank0"} | {f"writer{i + 1}" for i in range(s["writers"])}
               for s in scans)
    names = {b["name"] for b in doc.of("baseline")}
    assert names == {"publisher alone", "redis ceiling", "h5py-serial", "single-process writer"}
    box = doc.of("box")[0]["name"]
    assert "**lz4-bitshuffle, drain**" in stdout and f"| {box} | 2 (3) |" in stdout  # the tables, from the JSON
    if sliced:  # every process ran in its own slice (the kernel counted its periods), all removed at the end
        assert all(s["use"]["writer1"]["periods"] > 0 and s["use"]["redis"]["periods"] > 0 for s in scans)
        assert not list(CPU.glob(f"nxpar-bench-{proc.pid}-*"))
