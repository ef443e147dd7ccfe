"""Plot the live CPU budget: core-seconds per GB of frames, by process, against what 2 cores allow.

    python3 perf/plot_cpu_budget.py [perf/live/ab_live.json]   (any Python with matplotlib)

Reads the summary `perf.ab_live --json` writes and draws perf/live/cpu_budget.png: one stacked bar per
variant (publisher, Redis, writer ranks); the dashed line is the budget for running at 0.9× the
publisher alone on 2 cores (2 cores / (0.9 × publisher-alone GB/s)): a bar above it cannot reach the
target on this machine whatever the scheduling.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "live"
PARTS = (("publisher", "#9ecae1"), ("redis", "#fdae6b"), ("rank 0", "#bcbddc"), ("writer ranks", "#74c476"))


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else HERE / "ab_live.json").read_text())
    costs = summary["core_s_per_gb"]
    names = list(costs)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    labels = [n.replace("NXPAR_", "").replace("=", "=\n") for n in names]
    bottom = [0.0] * len(names)
    for part, colour in PARTS:
        values = [costs[n].get(part, 0.0) for n in names]
        ax.bar(labels, values, bottom=bottom, color=colour, label=part)
        bottom = [b + v for b, v in zip(bottom, values)]
    budget = 2 / (0.9 * summary["alone_mb_s"] / 1024)
    ax.axhline(budget, color="k", linestyle="--", label=f"2 cores at 0.9× publisher alone ({budget:.2f})")
    for i, n in enumerate(names):
        ratio = summary["variants"].get(n, {}).get("ratio")
        if ratio is not None:
            ax.annotate(f"{ratio:.2f}× alone", (i, bottom[i]), ha="center", va="bottom")
    ax.set_ylabel("core-seconds per GB of frames")
    ax.set_title(summary["label"], fontsize=9)
    ax.set_ylim(0, max(max(bottom), budget) * 1.15)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    HERE.mkdir(exist_ok=True)
    fig.savefig(HERE / "cpu_budget.png", dpi=100)
    print(f"wrote {HERE / 'cpu_budget.png'}")


if __name__ == "__main__":
    main()
