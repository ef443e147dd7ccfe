"""The benchmark harness (perf/): one command line for every scenario, every suite command valid, the
documents' generated tables consistent with their JSON, and the project's code-shape rules."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from perf.__main__ import parser
from perf.core.results import RESULTS, Document
from perf.report.documents import BLOCK, DOCUMENTS, regenerate, suite_of
from perf.report.tables import render
from perf.scenarios import NAMES
from perf.suites import SUITES

PERF = Path(__file__).resolve().parent.parent / "perf"


@pytest.mark.parametrize("name", NAMES)
def test_every_scenario_runs_from_the_one_command_line_with_its_defaults(name):
    args = parser().parse_args([name])
    assert args.command == name and args.json is None and not args.keep


def test_every_suite_command_is_a_valid_command_line_writing_its_own_json():
    for suite, entries in SUITES.items():
        assert len({e.name for e in entries}) == len(entries), suite
        for entry in entries:
            for quick in (False, True):
                argv = entry.argv(quick)
                if argv is None:
                    continue
                args = parser().parse_args(argv)
                assert args.json == Path("perf/results") / f"{entry.name}.json", (suite, entry.name)


def test_every_generated_block_of_the_documents_names_a_suite_command():
    for doc in DOCUMENTS:
        names = [m.group("name") for m in BLOCK.finditer(doc.read_text())]
        assert names, doc
        assert [n for n in names if suite_of(n) is None] == [], doc


def test_the_documents_are_what_their_json_gives():
    """No table typed in by hand, none left behind after a run: `python -m perf report --check`."""
    for doc in DOCUMENTS:
        text = doc.read_text()
        assert regenerate(text) == text, f"{doc.name}: run `python -m perf report`"


def test_a_block_becomes_the_tables_of_its_json(tmp_path):
    doc = Document("frames", "python -m perf frames --ranks 1 2", {"compression": ["lz4-bitshuffle"], "frames": 8,
                                                                   "shape": [64, 64], "dtype": "uint16", "repeat": 1},
                   machine={"cores": 2, "cpu": "test"}, commit="abc")
    doc.add("baseline", scheme="lz4-bitshuffle", name="live single-process writer", mb_per_s=50.0)
    use = {"publisher": {"cpu_s": 0.1, "peak_rss_mb": 90.0}, "rank0": {"cpu_s": 0.05, "peak_rss_mb": 140.0},
           "writer1": {"cpu_s": 0.2, "peak_rss_mb": 160.0, "periods": 10, "throttled": 5}}
    for ranks, speed in ((1, 40.0), (2, 60.0)):
        doc.add("scan", mode="live", ranks=ranks, writers=1, scheme="lz4-bitshuffle", mb_per_s=speed, nbytes=2**30,
                compression_ratio=3.0, close_after_end_s=0.2, publisher_alone_mb_per_s=80.0, use=use)
    doc.write(tmp_path / "frames-x.json")
    text = "intro\n<!-- perf:frames-x -->\nold figures\n<!-- /perf:frames-x -->\nprose\n"
    out = regenerate(text, tmp_path)
    assert "old figures" not in out and out.startswith("intro\n") and out.endswith("prose\n")
    assert "`python -m perf frames --ranks 1 2`" in out
    row = re.search(r"^\| live \| 2 \(1\) \| 60 \| 1\.20 \| 0\.75 \| 1\.50 \| 1\.00 \| 3\.00 \| 160 \|.*\| 50% \|$", out,
                    re.M)  # × (writers × 1 writer): against the run of one writer rank beside rank 0
    assert row, out
    assert regenerate(out, tmp_path) == out
    assert "_Not measured yet" in regenerate("<!-- perf:frames-lz4 -->\n<!-- /perf:frames-lz4 -->\n", tmp_path)
    assert render(Document.load(tmp_path / "frames-x.json"))[0].startswith("`python -m perf frames")


def test_results_hold_only_documents_the_suites_write():
    names = {e.name for entries in SUITES.values() for e in entries}
    assert {p.stem for p in RESULTS.glob("*.json")} <= names


def test_perf_modules_are_small_and_functions_short():
    long, big = {}, {}
    for path in sorted(PERF.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 300:
            big[str(path.relative_to(PERF))] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 40:
                long[f"{path.relative_to(PERF)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert not big and not long


def test_every_perf_module_says_what_it_owns():
    missing = [str(p.relative_to(PERF)) for p in PERF.rglob("*.py")
               if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing


@pytest.mark.integration  # the embedded stack, a service, the publisher and the baselines in their processes
def test_a_very_small_frames_run_measures_every_process(tmp_path):
    import subprocess
    import sys

    from perf.core.slices import unavailable
    from tests.helpers import ROOT

    slices = [] if unavailable() else ["--slices", "publisher=0.5,redis=0.5,rank0=0.3,writer=0.6"]
    out = tmp_path / "frames.json"
    cmd = [sys.executable, "-m", "perf", "frames", "--frames", "16", "--shape", "64", "64", "--ranks", "2",
           "--repeat", "1", *slices, "--json", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    doc = Document.load(out)
    assert doc.command == "python -m perf " + " ".join(cmd[3:])
    scans = {s["mode"]: s for s in doc.of("scan")}
    assert set(scans) == {"live", "drain"} and all(s["state"] == "OFF" for s in scans.values())
    live = scans["live"]
    assert live["publisher_alone_mb_per_s"] > 0 and 0 <= live["close_after_end_s"] < live["seconds"]
    assert set(live["use"]) == {"publisher", "redis", "rank0", "writer1"}
    assert all(u["cpu_s"] >= 0 and u["peak_rss_mb"] > 0 for u in live["use"].values())
    assert live["use"]["writer1"]["cpu_s"] > 0 and live["use"]["writer1"]["peak_rss_mb"] > 50
    assert {b["name"] for b in doc.of("baseline")} >= {"h5py-serial", "live single-process writer",
                                                        "drain single-process writer", "live relay"}
    assert "\n".join(render(doc)) in run.stdout  # what it printed is what the documents will show
