"""Plot the point-rate benchmark: lag after the scan per writer and rank count, before/after.

    python3 perf/plot_point_rate.py [runs.jsonl] [before.jsonl]   (any Python with matplotlib)

Reads perf/point_rate/runs.jsonl (lines of `perf.point_rate`, copied from perf/out/point_rate.jsonl) and
perf/point_rate/before.jsonl (the previous design, same script), writes perf/point_rate/lag.png.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "point_rate"


def medians(path: Path) -> dict[tuple[str, str, int], float]:
    groups: dict[tuple[str, str, int], list[float]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        groups.setdefault((r["scenario"], r["writer"], r["ranks"]), []).append(r["lag_s"])
    return {k: statistics.median(v) for k, v in groups.items()}


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    after = medians(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "runs.jsonl")
    before = medians(Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "before.jsonl")
    scenarios = sorted({k[0] for k in after})
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 3.8), sharey=True)
    for ax, sc in zip(axes, scenarios):
        labels = ["single\nprocess"] + [f"nxpar\n-n {n}" for n in (1, 2, 3)]
        keys = [(sc, "single-process", 1)] + [(sc, "nxpar", n) for n in (1, 2, 3)]
        x = range(len(keys))
        ax.bar([i - 0.2 for i in x], [before.get(k, float("nan")) for k in keys], 0.4, label="before (5b6f935)",
               color="#c44")
        ax.bar([i + 0.2 for i in x], [after.get(k, float("nan")) for k in keys], 0.4, label="now", color="#48c")
        ax.axhline(0.5, color="k", lw=0.8, ls="--", label="target 0.5 s")
        ax.set_xticks(list(x), labels)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_title(sc)
    axes[0].set_ylabel("file closed after the scan ended (s)")
    axes[0].legend(fontsize=8)
    fig.suptitle("kHz point rates: lag after the scan (median; 2-core box)")
    fig.tight_layout()
    fig.savefig(HERE / "lag.png", dpi=100)
    print(HERE / "lag.png")


if __name__ == "__main__":
    main()
