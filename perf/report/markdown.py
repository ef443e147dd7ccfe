"""Markdown helpers the tables share: a table from rows, CPU per GB, ratios that may be undefined."""
from __future__ import annotations

import math
from typing import Any, Iterable

from ..core.results import Spread

GIB = 2**30


def table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.{digits}f}"


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def spread(values: Iterable[float], digits: int = 0) -> str:
    return Spread.of(values).text(digits)


def median(values: Iterable[float]) -> float:
    return Spread.of(values).median


def cpu_per_gb(runs: list[dict[str, Any]], who: str) -> float:
    """Median CPU seconds per GiB of frames of one process group: 'publisher', 'redis', 'rank0',
    'writers' (every writer rank together)."""
    def one(run: dict[str, Any]) -> float:
        use = run.get("use") or {}
        if who == "writers":
            cpu = sum(u["cpu_s"] for name, u in use.items() if name.startswith("writer"))
        else:
            cpu = use.get(who, {}).get("cpu_s", float("nan"))
        return cpu / (run["nbytes"] / GIB)
    return median(one(r) for r in runs)


def throttled(runs: list[dict[str, Any]], who: str) -> str:
    """Share of the scan's enforcement periods in which a slice was throttled (median; writers: the
    most throttled writer rank)."""
    def one(run: dict[str, Any]) -> float:
        use = run.get("use") or {}
        names = [n for n in use if n.startswith("writer")] if who == "writers" else [who]
        shares = [use[n]["throttled"] / use[n]["periods"] for n in names
                  if n in use and use[n].get("periods")]
        return max(shares) if shares else float("nan")
    value = median(one(r) for r in runs)
    return "-" if math.isnan(value) else f"{value:.0%}"

