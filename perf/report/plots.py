"""PNGs from the JSON documents: `python -m perf plot [DOC.json …]` (default: every document in
perf/results/ that has a plot), into perf/results/plots/<document>.png.

Needs matplotlib, which the project's venv does not have: without it the command runs itself again
with the first Python that has it ($NXPAR_PLOT_PYTHON, .venv-bliss/bin/python, python3). Imports
nothing but the standard library, matplotlib and perf.core.results.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from ..core.results import RESULTS, ROOT, Document

PLOTS = RESULTS / "plots"


def _median(values: list[float]) -> float:
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2 if v else float("nan")


def scaling(doc: Document, plt) -> Any:
    schemes, modes = doc.params["compression"], doc.params["modes"]
    fig, axes = plt.subplots(len(modes), len(schemes), figsize=(4.2 * len(schemes), 3.6 * len(modes)), squeeze=False)
    for col, scheme in enumerate(schemes):
        for row, mode in enumerate(modes):
            ax = axes[row][col]
            for box in doc.of("box"):
                runs = doc.of("scan", scheme=scheme, mode=mode, box=box["name"])
                writers = sorted({r["writers"] for r in runs})
                speed = [_median([r["mb_per_s"] / r["core"] for r in runs if r["writers"] == w]) for w in writers]
                if not writers:
                    continue
                line, = ax.plot(writers, speed, "o-", label=f"box {box['name']}")
                if writers[0] == 1:
                    ax.plot(writers, [speed[0] * w for w in writers], ":", color=line.get_color(), lw=0.8)
            ax.set(title=f"{scheme}, {mode}", xlabel="writer ranks", ylabel="MB/s ÷ core (real-core equivalent)")
            ax.legend(fontsize=7)
    fig.suptitle("emulated boxes: throughput against writer ranks (dotted: N × one writer)", fontsize=10)
    return fig


def ab(doc: Document, plt) -> Any:
    parts = (("publisher", "#9ecae1"), ("redis", "#fdae6b"), ("rank0", "#bcbddc"), ("writers", "#74c476"))
    labels = list(dict.fromkeys(r["variant"] for r in doc.of("scan")))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    bottom = [0.0] * len(labels)
    for part, colour in parts:
        values = []
        for label in labels:
            per_run = []
            for r in doc.of("scan", variant=label):
                use = r["use"]
                cpu = sum(u["cpu_s"] for n, u in use.items() if n.startswith("writer")) if part == "writers" \
                    else use.get(part, {}).get("cpu_s", 0.0)
                per_run.append(cpu / (r["nbytes"] / 2**30))
            values.append(_median(per_run))
        ax.bar(labels, values, bottom=bottom, color=colour, label=part)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set(ylabel="core-seconds per GiB of frames", title=doc.command)
    ax.legend(fontsize=8)
    return fig


def _binned(samples: list, t0: float, names: list[str], bin_s: float = 0.1) -> tuple[list[float], dict]:
    """Mean cores per 100 ms bin: the kernel accounts CPU in 10 ms ticks, shorter bins are mostly noise."""
    bins: dict[int, list[dict[str, float]]] = {}
    for t, cores in samples:
        bins.setdefault(int((t - t0) / bin_s), []).append(cores)
    times = [b * bin_s for b in sorted(bins)]
    return times, {n: [sum(c[n] for c in bins[b]) / len(bins[b]) for b in sorted(bins)] for n in names}


def timeline(doc: Document, plt) -> Any:
    runs = doc.of("timeline")
    picks = [[r for r in runs if r["session"] == s][-1] for s in ("publisher alone", "nxpar")
             if any(r["session"] == s for r in runs)]
    fig, axes = plt.subplots(len(picks), 1, figsize=(10, 3 * len(picks)), sharex=True, squeeze=False)
    for ax, run in zip(axes[:, 0], picks):
        t0 = run["marks"]["begin"]
        names = [n for n in run["samples"][0][1] if n != "iowait"] if run["samples"] else []
        times, series = _binned(run["samples"], t0, names)
        ax.stackplot(times, *[series[n] for n in names], labels=names, step="post")
        for mark in ("first", "sent", "closed", "file closed"):
            if mark in run["marks"]:
                ax.axvline(run["marks"][mark] - t0, color="k", lw=0.8, ls="--")
                ax.text(run["marks"][mark] - t0, ax.get_ylim()[1] * 0.95, mark, fontsize=7, ha="center")
        ax.set(ylabel="cores", title=run["session"])
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    axes[-1, 0].set_xlabel("seconds from the publisher's start (20 ms samples)")
    return fig


def points(doc: Document, plt) -> Any:
    scenarios = doc.params["scenario"]
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 3.8), squeeze=False)
    for ax, name in zip(axes[0], scenarios):
        runs = doc.of("points", scenario=name)
        keys = list(dict.fromkeys((r["writer"], r["ranks"]) for r in runs))
        ax.bar([f"{w}\n-n {n}" for w, n in keys],
               [_median([r["lag_s"] for r in runs if (r["writer"], r["ranks"]) == k]) for k in keys])
        ax.axhline(0.5, color="k", lw=0.8, ls="--")
        ax.set(title=name, ylabel="file closed after the scan ended (s)")
    return fig


PLOTTERS: dict[str, Callable[[Document, Any], Any]] = {"scaling": scaling, "ab": ab, "timeline": timeline,
                                                        "points": points}


def _python_with_matplotlib() -> str | None:
    for candidate in (os.environ.get("NXPAR_PLOT_PYTHON"), str(ROOT / ".venv-bliss" / "bin" / "python"), "python3"):
        found = candidate and shutil.which(candidate)
        if found and subprocess.run([found, "-c", "import matplotlib"], capture_output=True).returncode == 0:
            return found
    return None


def main(argv: list[str] | None = None) -> None:
    paths = [Path(a) for a in (argv or [])] or sorted(RESULTS.glob("*.json"))
    try:
        import matplotlib
    except ImportError:
        python = _python_with_matplotlib()
        if python is None or python == sys.executable:
            sys.exit("no Python with matplotlib: set NXPAR_PLOT_PYTHON")
        sys.exit(subprocess.run([python, "-m", "perf.report.plots", *map(str, paths)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    for path in paths:
        doc = Document.load(path)
        if doc.scenario in PLOTTERS:
            fig = PLOTTERS[doc.scenario](doc, plt)
            fig.tight_layout()
            fig.savefig(PLOTS / f"{path.stem}.png", dpi=100)
            plt.close(fig)
            print(f"written: {PLOTS / f'{path.stem}.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
