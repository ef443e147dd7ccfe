"""The reference comparison: the real-BLISS scenarios run once with nxpar writing and once with the
reference (blisswriter 2.0.0) writing, on the tier's stack and BLISS session; each scan's two entries
compared (tests/bliss/h5compare.py) and the time from BLISS's scan end to each writer done.

Each writer's run: `Writers.use(writer)`, then `comparison_setup` in BLISS (files under
NXBLISS_DATA/<writer>/, scans numbered from FIRST_NUMBER: the two files have the same entry names and
scan names; motors at 0, no plot), every scenario of COMPARED in order, each waited for until the
writer has finished all its scans (scan_clock.WriterClock, which also times them), and
`comparison_teardown`. nxpar serves the session again at the end.

Times (seconds, per scan): `lag` = writer done (state OFF/FAULT first seen by the 10 ms poller) minus
BLISS's scan end (scan_info end_time, written by BLISS as the scan ends, before it closes the scan in
Redis); `file_lag` = the entry's end_time (the writer's clock, written with its final status) minus the
same BLISS end.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from tests.bliss.expect import BlissScan, text
from tests.bliss.h5compare import Difference, EntryView, compare, compare_root, describe
from tests.bliss.scan_clock import POLL_S, ScanClock, WriterClock
from tests.bliss.writers import WriterKind, Writers

FIRST_NUMBER = 1001
# every scan type of scenarios.py that the "nexus" writer writes (not mapping_scans: BLISS's "mapping"
# route asks a BlissWriter device, which blisswriter 2.0.0 does not have), then more_scenarios.py's
COMPARED = ("ct", "sct", "loopscan", "timescan_bounded", "timescan_aborted", "ascan", "dscan", "a2scan", "amesh",
            "dmesh", "a3mesh", "lookupscan", "pointscan", "mca", "fake_detectors", "fake_chunk_options", "sequence",
            "scan_sequence", "failing", "aborted", "two_at_once",
            "a3scan", "d2scan", "anscan", "dnscan", "lineup", "d3mesh", "anmesh", "amesh_plotinit", "mixed_counters",
            "ascan_aborted_between_points", "timescan_aborted_between_points", "khz_mixed")
SCENARIO_TIMEOUT = {"khz_mixed": 600}


def epoch(iso: str | None) -> float | None:
    return datetime.datetime.fromisoformat(iso).timestamp() if iso else None


@dataclass
class RunScan:
    """One scan of one writer's run: what BLISS reported, when the writer was done, the entry's end."""
    scan: BlissScan
    clock: ScanClock | None
    status: str = ""  # writer/status in the entry
    file_end: float | None = None  # the entry's end_time (writer clock)

    @property
    def bliss_end(self) -> float | None:
        return epoch(self.scan.info.get("end_time"))

    @property
    def lag(self) -> float | None:
        if self.clock is None or self.clock.done is None or self.bliss_end is None:
            return None
        return self.clock.done - self.bliss_end

    @property
    def file_lag(self) -> float | None:
        return None if self.file_end is None or self.bliss_end is None else self.file_end - self.bliss_end

    def timing(self) -> dict:
        state = self.clock.state if self.clock else "never seen"
        start = epoch(self.scan.info.get("start_time"))
        return {"identifier": self.scan.identifier, "state": state, "status": self.status, "lag_s": self.lag,
                "file_lag_s": self.file_lag, "upper_bound": bool(self.clock and not self.clock.seen_running),
                "points": _points(self.scan), "bliss_duration_s": self.bliss_end - start if start else None}


def _points(scan: BlissScan) -> int:
    return max((len(v) for v in scan.data.values() if getattr(v, "ndim", 0) >= 1), default=0)


@dataclass
class WriterRun:
    writer: WriterKind
    run_dir: Path
    scans: dict[str, list[RunScan]] = field(default_factory=dict)


def run_writer(bliss, writers: Writers, kind: WriterKind, scenarios=COMPARED) -> WriterRun:
    """All `scenarios` in BLISS with `kind` serving the session's NexusWriter device."""
    writers.use(kind)
    stack = writers.stack
    run = WriterRun(kind, stack.data_dir / kind.value)
    bliss.run("comparison_setup", args=(kind.value, FIRST_NUMBER))
    try:
        with WriterClock(stack.devname) as clock:
            for scenario in scenarios:
                report = bliss.run(scenario, timeout=SCENARIO_TIMEOUT.get(scenario, 180))
                scans = [BlissScan.load(r) for r in report["scans"]]
                saved = [s.identifier for s in scans if s.filename]
                clocks = clock.wait_done(saved, timeout=SCENARIO_TIMEOUT.get(scenario, 120))
                run.scans[scenario] = [RunScan(s, clocks.get(s.identifier)) for s in scans]
    finally:
        bliss.run("comparison_teardown")
    for scans in run.scans.values():
        for rs in scans:
            _read_end(rs)
    return run


def _read_end(rs: RunScan) -> None:
    if not rs.scan.filename or not Path(rs.scan.filename).exists():
        return
    with h5py.File(rs.scan.filename, "r", locking=False) as f:
        entry = f.get(rs.scan.entry)
        if entry is None:
            return
        if "writer/status" in entry:
            rs.status = text(entry["writer/status"][()])
        if "end_time" in entry:
            rs.file_end = epoch(text(entry["end_time"][()]))


@dataclass
class Verdict:
    """One scan type: its scans' differences (and storage notes) between the two writers; `unlike_runs`:
    the channels BLISS itself published differently in the two runs (an abort in the middle of a point
    leaves them at lengths that vary from run to run): then the files cannot be expected alike."""
    scenario: str
    differences: list[str] = field(default_factory=list)
    storage: list[str] = field(default_factory=list)
    unlike_runs: list[str] = field(default_factory=list)
    ragged: list[str] = field(default_factory=list)  # scans whose channels ended at different lengths
    scans: list[dict] = field(default_factory=list)

    @property
    def alike(self) -> bool:
        return not self.differences

    @property
    def comparable(self) -> bool:
        return not self.unlike_runs


def unlike_publications(a: BlissScan, b: BlissScan) -> list[str]:
    """The channels of which BLISS published another number of points in the two runs of one scan type
    (a sample count per point may vary: SAMPLES diodes)."""
    points = [{k: getattr(v, "shape", (None,))[:1] for k, v in s.data.items()} for s in (a, b)]
    return [f"{a.identifier} {k}: {points[0].get(k)} / {points[1].get(k)} points"
            for k in sorted(set(points[0]) | set(points[1])) if points[0].get(k) != points[1].get(k)]


def compare_runs(nxpar: WriterRun, reference: WriterRun) -> list[Verdict]:
    verdicts = []
    for scenario, ours in nxpar.scans.items():
        theirs = reference.scans.get(scenario, [])
        verdict = Verdict(scenario)
        if len(ours) != len(theirs):
            verdict.differences.append(f"scans: nxpar {len(ours)} / reference {len(theirs)}")
        for a, b in zip(ours, theirs):
            verdict.scans.append({"nxpar": a.timing(), "reference": b.timing()})
            verdict.unlike_runs += unlike_publications(a.scan, b.scan)
            verdict.ragged += [a.scan.identifier] if ragged(a.scan) else []
            differences, storage = compare_scan(a, b, nxpar.run_dir, reference.run_dir)
            verdict.differences += [f"{a.scan.identifier} {d}" for d in differences]
            verdict.storage += [f"{a.scan.identifier} {d}" for d in storage]
        verdicts.append(verdict)
    return verdicts


def compare_scan(a: RunScan, b: RunScan, a_dir: Path, b_dir: Path) -> tuple[list[Difference], list[Difference]]:
    """The two entries of one scan (or: what each writer ended in, when one has no entry)."""
    state_a = a.clock.state if a.clock else "never seen"
    state_b = b.clock.state if b.clock else "never seen"
    differences = []
    if (a.scan.filename and b.scan.filename) and state_a != state_b:
        differences.append(Difference("(scan)", "writer state", state_a, state_b))
    if not (a.scan.filename and b.scan.filename):
        if bool(a.scan.filename) != bool(b.scan.filename):
            differences.append(Difference("(scan)", "file", a.scan.filename or "-", b.scan.filename or "-"))
        return differences, []
    views = EntryView(str(a_dir), a.scan.data, homes(a.scan)), EntryView(str(b_dir), b.scan.data, homes(b.scan))
    with h5py.File(a.scan.filename, "r", locking=False) as fa, h5py.File(b.scan.filename, "r", locking=False) as fb:
        present = a.scan.entry in fa, b.scan.entry in fb
        if present != (True, True):
            return differences + [Difference(a.scan.entry, "entry", str(present[0]), str(present[1]))], []
        more, storage = compare(describe(fa, a.scan.entry, views[0]), describe(fb, b.scan.entry, views[1]))
    return differences + more, storage


def homes(scan: BlissScan) -> dict[str, str]:
    """Path in the entry → the channel BLISS placed there (its HDF5 fallback path)."""
    prefix = f"{scan.entry}/"
    return {path[len(prefix):]: channel for channel, path in scan.report["data_paths"].items()
            if path and path.startswith(prefix)}


def ragged(scan: BlissScan) -> bool:
    """BLISS published its channels with different numbers of points (an abort in the middle of a point)."""
    return len({len(v) for v in scan.data.values() if getattr(v, "ndim", 0) >= 1}) > 1


def compare_files(nxpar: WriterRun, reference: WriterRun) -> list[str]:
    """The root attributes of the two data files (every scan type writes into one)."""
    out = []
    for path_a in sorted(nxpar.run_dir.rglob("*.h5")):
        path_b = reference.run_dir / path_a.relative_to(nxpar.run_dir)
        if not path_b.exists():
            out.append(f"{path_a.relative_to(nxpar.run_dir)}: only nxpar wrote it")
            continue
        views = EntryView(str(nxpar.run_dir)), EntryView(str(reference.run_dir))
        with h5py.File(path_a, "r", locking=False) as fa, h5py.File(path_b, "r", locking=False) as fb:
            out += [f"{path_a.name} {d}" for d in compare_root(fa, fb, views)]
    return out


def document(verdicts: list[Verdict], files: list[str], ranks: int, load: tuple[float, ...]):
    """The comparison as perf's JSON document (perf/core/results.py: machine, commit, runs):
    runs of kind `verdict` (one per scan type) and `files`; tests/bliss/reference_report.py draws the tables."""
    import os

    from perf.core.results import Document

    doc = Document("reference", "make compare-reference", {
        "ranks": ranks, "scenarios": list(COMPARED), "first_number": FIRST_NUMBER, "poll_s": POLL_S,
        "reference": "blisswriter 2.0.0", "load_before": list(load), "load_after": list(os.getloadavg())})
    for v in verdicts:
        doc.add("verdict", scenario=v.scenario, alike=v.alike, comparable=v.comparable, differences=v.differences,
                storage=v.storage, unlike_runs=v.unlike_runs, ragged=v.ragged, scans=v.scans)
    doc.add("files", differences=files)
    return doc
