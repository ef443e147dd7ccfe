"""The tables of the reference comparison, drawn from its JSON (tests/bliss/test_reference.py writes it):

    python -m tests.bliss.reference_report [docs/reference_comparison.json]

1. per scan type: alike, or the differences (nxpar / reference);
2. per scan: the time from BLISS's scan end to the writer done (state OFF/FAULT polled every 10 ms)
   and to the entry's end_time (the writer's clock), nxpar against blisswriter 2.0.0, same run; sums and
   maxima over the scans both writers finished; the kHz scan's line apart with BLISS's publication rate.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

from perf.core.results import ROOT, Document

# the last run committed (perf/results/ holds only the documents of perf's suites: tests/test_perf_harness.py)
DEFAULT = ROOT / "docs" / "reference_comparison.json"
WRITERS = ("nxpar", "reference")


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def verdict_lines(doc: Document) -> list[str]:
    verdicts = doc.of("verdict")
    alike = [v["scenario"] for v in verdicts if v["alike"]]
    judged = [v for v in verdicts if v["comparable"]]
    out = [f"## Files: {len(alike)}/{len(verdicts)} scan types alike ({len(judged)} comparable)", "",
           "| scan type | scans | verdict |", "|---|---|---|"]
    for v in verdicts:
        verdict = "alike" if v["alike"] else f"{len(v['differences'])} differences"
        if not v["comparable"]:
            verdict = f"not comparable: BLISS published other points in the two runs ({len(v['differences'])} differences)"
        out.append(f"| {v['scenario']} | {len(v['scans'])} | {verdict} |")
    for v in verdicts:
        if v["differences"]:
            out += ["", f"### {v['scenario']}", ""] + [f"- BLISS's runs differ: {d}" for d in v["unlike_runs"]]
            out += [f"- {d}" for d in v["differences"]]
    files = doc.of("files")[0]["differences"] if doc.of("files") else []
    out += ["", "Data files' root attributes: " + ("; ".join(files) if files else "alike")]
    notes = sorted({d.split(": storage: ", 1)[1] for v in verdicts for d in v["storage"]})
    out += ["", f"Storage (chunks, filters, fill value; not a difference): {len(notes)} distinct pairs"]
    return out


def timing_rows(doc: Document) -> list[tuple[str, dict, dict]]:
    return [(v["scenario"], s["nxpar"], s["reference"]) for v in doc.of("verdict") for s in v["scans"]
            if s["nxpar"]["status"] or s["reference"]["status"]]


def timing_lines(doc: Document) -> list[str]:
    rows = timing_rows(doc)
    out = ["## BLISS's scan end → writer done (s)", "",
           "| scan | points | nxpar done | reference done | nxpar end_time | reference end_time |",
           "|---|---|---|---|---|---|"]
    for _, a, b in rows:
        out.append(f"| {a['identifier']} | {a['points']} | {_s(a['lag_s'])} | {_s(b['lag_s'])} | "
                   f"{_s(a['file_lag_s'])} | {_s(b['file_lag_s'])} |")
    both = [(a, b) for _, a, b in rows if a["lag_s"] is not None and b["lag_s"] is not None]
    for key, what in (("lag_s", "done"), ("file_lag_s", "end_time")):
        values = [[r[i][key] or 0 for r in both] for i in (0, 1)]
        cells = [f"{sum(v):.2f} (median {statistics.median(v) if v else 0:.3f}, max {max(v, default=0):.2f})"
                 for v in values]
        out.append(f"| **sum over {len(both)} scans, {what}** | | {cells[0]} | {cells[1]} | | |")
    for scenario, a, b in rows:
        if scenario == "khz_mixed":
            rate = a["points"] / a["bliss_duration_s"] if a["bliss_duration_s"] else 0
            out += ["", f"kHz scan {a['identifier']}: {a['points']} points (BLISS published at ~{rate:.0f} Hz "
                    f"in the nxpar run, ~{b['points'] / (b['bliss_duration_s'] or 1):.0f} Hz in the reference's): "
                    f"done {_s(a['lag_s'])} s after the scan (nxpar) / {_s(b['lag_s'])} s (reference)"]
    return out


def render(doc: Document) -> list[str]:
    p = doc.params
    head = [f"# nxpar against {p['reference']} — {doc.started}, commit {doc.commit}, {doc.machine.get('cores')} cores, "
            f"load {p['load_before'][0]:.1f} → {p['load_after'][0]:.1f}, nxpar on {p['ranks']} ranks", ""]
    return head + verdict_lines(doc) + [""] + timing_lines(doc)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    print("\n".join(render(Document.load(Path(argv[0]) if argv else DEFAULT))))


if __name__ == "__main__":
    main()
