"""The markdown tables of each scenario, from its JSON document (perf/core/results.py): what the
command prints and what `python -m perf report` puts into the documents, the same lines."""
from __future__ import annotations

from typing import Any, Callable

from ..core.results import Document
from .markdown import cpu_per_gb, median, num, ratio, spread, table, throttled


def header(doc: Document) -> list[str]:
    slices = f"; CPU slices: {_slices_text(doc.slices)}" if doc.slices else ""
    return [f"`{doc.command}` ({doc.started[:16].replace('T', ' ')} UTC, commit {doc.commit}, "
            f"{doc.machine.get('cores')} cores {doc.machine.get('cpu', '')}{slices})", ""]


def _slices_text(slices: dict[str, Any]) -> str:
    parts = [f"{k} {v:g}" for k, v in slices.items() if k not in ("period_us", "label") and v is not None]
    return (slices.get("label") or "") + (": " if slices.get("label") else "") + ", ".join(parts) + \
        f", period {slices['period_us'] // 1000} ms"


# -- frames ---------------------------------------------------------------------------------------
def frames_baselines(doc: Document, scheme: str) -> list[str]:
    rows = [[b["name"], num(b["mb_per_s"])] for b in doc.of("baseline", scheme=scheme)]
    return table(["baseline (single process, same run)", "MB/s"], rows)


def one_writer(groups: dict[tuple[str, int], list[dict]], mode: str) -> float | None:
    """MB/s of the run with one writer rank beside rank 0 (or rank 0 alone if none): what N writer ranks
    are compared with (× (writers × 1 writer))."""
    ranks = [r for (m, r), runs in groups.items() if m == mode and runs[0]["writers"] == 1]
    return median(x["mb_per_s"] for x in groups[(mode, max(ranks))]) if ranks else None


def frames_scans(doc: Document, scheme: str) -> list[str]:
    base = {b["name"]: b["mb_per_s"] for b in doc.of("baseline", scheme=scheme)}
    scans = doc.of("scan", scheme=scheme)
    groups: dict[tuple[str, int], list[dict]] = {}
    for s in scans:
        groups.setdefault((s["mode"], s["ranks"]), []).append(s)
    rows = []
    for (mode, ranks), runs in groups.items():
        speed = median(r["mb_per_s"] for r in runs)
        one = median(r["mb_per_s"] for r in groups.get((mode, 1), [])) if (mode, 1) in groups else None
        per_writer = one_writer(groups, mode) * runs[0]["writers"] if one_writer(groups, mode) else None
        paired = [r["mb_per_s"] / r["publisher_alone_mb_per_s"] for r in runs if r.get("publisher_alone_mb_per_s")]
        rows.append([mode, f"{ranks} ({runs[0]['writers']})", spread(r["mb_per_s"] for r in runs),
                     ratio(speed, base.get(f"{mode} single-process writer")), spread(paired, 2) if paired else "-",
                     ratio(speed, one), ratio(speed, per_writer), num(median(r["compression_ratio"] for r in runs), 2),
                     num(max(max(u["peak_rss_mb"] for n, u in r["use"].items() if n.startswith(("rank", "writer")))
                             for r in runs)),
                     spread((r["close_after_end_s"] for r in runs), 2),
                     *(num(cpu_per_gb(runs, who), 2) for who in ("publisher", "redis", "rank0", "writers")),
                     throttled(runs, "writers")])
    return table(["mode", "ranks (writers)", "nxpar MB/s", "× single-process writer", "× same publisher alone (paired)",
                  "× 1 rank", "× (writers × 1 writer)", "compression ratio", "peak RSS/rank MB", "file closed after scan end s",
                  "CPU s/GB publisher", "CPU s/GB Redis", "CPU s/GB rank 0", "CPU s/GB writer ranks",
                  "writer slice throttled"], rows)


def frames(doc: Document) -> list[str]:
    out = header(doc)
    p = doc.params
    for scheme in p["compression"]:
        out += [f"{p['frames']} frames {p['shape'][0]}×{p['shape'][1]} {p['dtype']}, **{scheme}**, "
                f"median of {p['repeat']} (min-max):", ""]
        out += frames_baselines(doc, scheme) + [""] + frames_scans(doc, scheme) + [""]
    return out


RENDERERS: dict[str, Callable[[Document], list[str]]] = {"frames": frames}


def render(doc: Document) -> list[str]:
    """The tables of a document (its scenario's renderer)."""
    from . import copy_tables, more_tables, redis_tables, scaling_tables

    renderers = RENDERERS | more_tables.RENDERERS | scaling_tables.RENDERERS
    renderers |= copy_tables.RENDERERS | redis_tables.RENDERERS
    if doc.scenario not in renderers:
        return header(doc) + [f"({len(doc.runs)} runs; no table for {doc.scenario})"]
    return renderers[doc.scenario](doc)
