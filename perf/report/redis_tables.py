"""Tables of Redis's `io-threads` against the Redis read ceiling (`redis_threads`,
perf/scenarios/redis_threads.py)."""
from __future__ import annotations

from typing import Any

from ..core.results import Document
from .markdown import GIB, median, num, ratio, spread, table
from .tables import header


def _limit_text(run: dict[str, Any]) -> str:
    if run["redis_cores"] is None:
        return "none"
    return f"Redis {run['redis_cores']:g} core, each reader {run['reader_cores']:g}"


def _share(throttling: dict[str, Any] | None) -> float:
    if not throttling or not throttling["periods"]:
        return float("nan")
    return throttling["throttled"] / throttling["periods"]


def _throttled(runs: list[dict[str, Any]], readers: bool) -> str:
    """Median share of the drain's periods in which the slice ran out of quota (readers: the most
    throttled reader), and the median throttled time."""
    if readers:
        shares = [max((_share(t) for t in r["readers_throttling"]), default=float("nan")) for r in runs]
        seconds = [max((t["throttled_s"] for t in r["readers_throttling"]), default=float("nan")) for r in runs]
    else:
        shares = [_share(r["redis_throttling"]) for r in runs]
        seconds = [r["redis_throttling"]["throttled_s"] if r["redis_throttling"] else float("nan") for r in runs]
    share = median(shares)
    return "-" if share != share else f"{share:.0%} ({median(seconds):.2f} s)"


def _io_share(runs: list[dict[str, Any]], what: str) -> str:
    done = sum(r[f"io_threaded_{what}_processed"] for r in runs)
    total = sum(r[f"total_{what}_processed"] for r in runs)
    return f"{done / total:.0%}" if total else "-"


def _row(runs: list[dict[str, Any]], one: float | None, same_quota: float | None) -> list[str]:
    speed = median(r["mb_per_s"] for r in runs)
    return [_limit_text(runs[0]), runs[0]["io_threads"], spread((r["mb_per_s"] for r in runs), 0), ratio(speed, one),
            ratio(speed, same_quota), num(median(r["redis_cpu_s"] / (r["nbytes"] / GIB) for r in runs), 2),
            num(median(r["redis_cpu_s"] / r["cpu_wall_s"] for r in runs), 2),
            _io_share(runs, "writes"), _io_share(runs, "reads"), _throttled(runs, False), _throttled(runs, True)]


Key = tuple[str, float | None, int]  # limit, Redis's quota in cores, io-threads


def ceiling_table(doc: Document) -> list[str]:
    """One row per limit, Redis quota and io-threads; against io-threads 1 in one slice (unlimited:
    unlimited), and against io-threads 1 at the same quota (the quota's share of the gain)."""
    groups: dict[Key, list[dict[str, Any]]] = {}
    for r in doc.of("ceiling"):
        groups.setdefault((r["limit"], r["redis_cores"], r["io_threads"]), []).append(r)
    speed = {key: median(r["mb_per_s"] for r in runs) for key, runs in groups.items()}
    one_slice = (doc.slices or {}).get("redis")
    rows = [_row(runs, speed.get((limit, None if limit == "unlimited" else one_slice, 1)),
                 speed.get((limit, cores, 1)))
            for (limit, cores, threads), runs in sorted(groups.items(), key=lambda kv: (
                kv[0][0] != "unlimited", kv[0][1] or 0.0, kv[0][2]))]
    return table(["CPU limit", "io-threads", "MB/s", "× io-threads 1", "× io-threads 1, same quota",
                  "Redis CPU s/GB", "Redis cores used", "write calls by I/O threads", "read calls by I/O threads",
                  "Redis slice throttled", "readers throttled (most)"], rows)


def redis_lines(doc: Document) -> list[str]:
    out = []
    for r in doc.of("redis"):
        config = ", ".join(f"{k} {v}" for k, v in sorted(r["config"].items()))
        out.append(f"* `{' '.join(r['args'])}`: {config}; {r['threads_started']} threads in the process")
    return out


def redis_threads(doc: Document) -> list[str]:
    p = doc.params
    first = (doc.of("ceiling") or [{}])[0]
    readers = first.get("readers", p.get("readers"))
    period = f"{doc.slices['period_us'] // 1000} ms" if doc.slices else "enforcement"
    return (header(doc) +
            [f"{readers} readers each draining the same scan of {p['frames']} frames {p['shape'][0]}×{p['shape'][1]} "
             f"{p['dtype']} ({p['rows']} per XRANGE) at once, median of {p['repeat']} (min-max); Redis "
             f"{p['redis_version']} (CPU s/GB: per GiB served; throttled: share of the drain's {period} periods "
             f"in which the slice ran out of quota, and for how long):", ""] +
            ceiling_table(doc) + ["", "Each Redis as started (CONFIG GET io-threads*):", ""] + redis_lines(doc) + [""])


RENDERERS = {"redis_threads": redis_threads}
