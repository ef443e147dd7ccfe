"""Tables of `file_copy`: nxpar's writer ranks copying Lima frames from the detector's files into the
scan file, by writer-rank count, against one process copying the same files (same run)."""
from __future__ import annotations

from typing import Any

from ..core.results import Document
from .markdown import GIB, cpu_per_gb, median, num, ratio, spread, table, throttled
from .tables import header

ROLES = ("redis", "rank0", "writers")


def _groups(doc: Document, scheme: str) -> dict[int, list[dict[str, Any]]]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for s in doc.of("scan", scheme=scheme):
        groups.setdefault(s["writers"], []).append(s)
    return dict(sorted(groups.items()))


def _baseline_row(runs: list[dict[str, Any]]) -> list[str]:
    cpu = median(r["cpu_s"] / (r["nbytes"] / GIB) for r in runs)
    return ["one process (h5py)", spread((r["mb_per_s"] for r in runs), 1), "-", "-", "1.00", "-", num(cpu, 2),
            "-", "-", "-", "-"]


def _scan_row(writers: int, runs: list[dict[str, Any]], one: float | None, single: float | None) -> list[str]:
    speed = median(r["mb_per_s"] for r in runs)
    compared = sum(1 for r in runs if r.get("compared"))
    return [f"{writers} ({writers + 1})", spread((r["mb_per_s"] for r in runs), 1), ratio(speed, one),
            ratio(speed, one * writers if one else None), ratio(speed, single),
            num(median(r["compression_ratio"] for r in runs), 2), num(cpu_per_gb(runs, "writers"), 2),
            num(cpu_per_gb(runs, "rank0"), 2), throttled(runs, "rank0"), throttled(runs, "writers"),
            f"{compared} of {len(runs)}"]


def copy_scheme(doc: Document, scheme: str) -> list[str]:
    base = doc.of("baseline", scheme=scheme)
    single = median(r["mb_per_s"] for r in base) if base else None
    groups = _groups(doc, scheme)
    one = median(r["mb_per_s"] for r in groups[1]) if 1 in groups else None
    rows = ([_baseline_row(base)] if base else []) + [_scan_row(w, runs, one, single) for w, runs in groups.items()]
    return table(["writer ranks (ranks)", "MB/s", "× 1 writer rank", "× (writers × 1 writer rank)",
                  "× one process", "compression ratio", "writers CPU s/GB", "rank 0 CPU s/GB",
                  "throttled: rank 0", "writers (most)", "frames compared"], rows)


def _cpu_stat(runs: list[dict[str, Any]], who: str) -> str:
    """nr_throttled / nr_periods (throttled time) of a role's slice(s), every run together."""
    picked = [u for r in runs for n, u in r["use"].items()
              if (n.startswith("writer") if who == "writers" else n == who) and u.get("periods") is not None]
    if not picked:
        return "-"
    return (f"{sum(u['throttled'] for u in picked)}/{sum(u['periods'] for u in picked)} "
            f"({sum(u['throttled_s'] for u in picked):.2f} s)")


def copy_throttling(doc: Document) -> list[str]:
    rows = [[scheme, writers, *(_cpu_stat(runs, who) for who in ROLES)]
            for scheme in doc.params["compression"] for writers, runs in _groups(doc, scheme).items()]
    return table(["scheme", "writer ranks", "Redis", "rank 0", "writer ranks (together)"], rows)


def file_copy(doc: Document) -> list[str]:
    p = doc.params
    out = header(doc)
    for scheme in p["compression"]:
        frames = p["frames_per_scheme"][scheme]
        out += [f"**{scheme}**: {frames} frames {p['shape'][0]}×{p['shape'][1]} {p['dtype']} in Lima HDF5 files of "
                f"{p['per_file']} frames, copied by the writer ranks, PREPARED → file closed (median of "
                f"{p['repeat']}, min-max; one process: the same files read and written with h5py, same chunks "
                "and filter; throttled: share of the scan's enforcement periods the slice ran out of quota):", ""]
        out += copy_scheme(doc, scheme) + [""]
    if doc.slices:
        out += ["The slices' throttling (cpu.stat: throttled periods / periods, and throttled time, every scan of "
                "the configuration together):", ""] + copy_throttling(doc) + [""]
    return out


RENDERERS = {"file_copy": file_copy}
