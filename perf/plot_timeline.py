"""Plot perf.timeline_live's samples: cores used per process, and idle cores, over one scan.

    .venv-bliss/bin/python perf/plot_timeline.py perf/live/timeline.json perf/live/timeline.png

Two panels: the last scan published with nobody writing, and the last one nxpar wrote; the marks
are the publisher's first frame, its last frame and the file closed.
"""
from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BIN_S = 0.1  # the kernel accounts CPU time in 10 ms ticks: shorter bins are mostly noise
COLOURS = {"publisher": "tab:blue", "redis-server": "tab:red", "rank0": "tab:olive"}


def _binned(run: dict) -> tuple[list[float], dict[str, list[float]]]:
    t0 = run["marks"]["t0"]
    bins: dict[int, list] = {}
    for t, idle, _wait, per in run["samples"]:
        bins.setdefault(int((t - t0) / BIN_S), []).append((idle, per))
    times, series = [], {}
    for b in sorted(bins):
        rows = bins[b]
        times.append(b * BIN_S)
        for name in rows[0][1]:
            series.setdefault(name, []).append(sum(r[1][name] for r in rows) / len(rows))
        series.setdefault("idle", []).append(sum(r[0] for r in rows) / len(rows))
    return times, series


def main(src: str, dst: str) -> None:
    runs = json.load(open(src))
    picks = [[r for r in runs if r["session"] == s][-1] for s in ("nobody_writes", "tl")]
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, run, title in zip(axes, picks, ("publisher alone", "publisher + nxpar (2 ranks)")):
        times, series = _binned(run)
        names = [n for n in series if n != "idle"]
        colours = [COLOURS.get(n, "tab:green") for n in names] + ["lightgrey"]
        ax.stackplot(times, *[series[n] for n in names], series["idle"], labels=names + ["idle"], colors=colours,
                     step="post")
        t0 = run["marks"]["t0"]
        for height, (mark, label) in zip((2.05, 2.25, 2.05), (("first frame", "first frame"),
                                                             ("sent", "last frame in Redis"),
                                                             ("file closed", "file closed"))):
            if mark in run["marks"] and (mark != "file closed" or run["session"] != "nobody_writes"):
                ax.axvline(run["marks"][mark] - t0, color="k", lw=0.8, ls="--")
                ax.text(run["marks"][mark] - t0, height, label, fontsize=7, ha="center", va="bottom")
        ax.set_ylim(0, 2.45)
        ax.set_ylabel("cores")
        ax.set_title(title, fontsize=10, loc="left")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    axes[-1].set_xlabel("seconds from the scan's start (2-core machine; 100 ms bins)")
    fig.suptitle("Live 1024² uint16 LZ4-bitshuffle frames: where the two cores go")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
