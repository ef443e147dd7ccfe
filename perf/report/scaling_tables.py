"""Tables of the emulated many-core box (`scaling`), of its validation (`emulation`) and of the
per-stage CPU model (`stages`)."""
from __future__ import annotations

from typing import Any

from ..core.results import Document
from .markdown import cpu_per_gb, median, num, ratio, spread, table, throttled
from .tables import header

ROLES = ("publisher", "redis", "rank0", "writers")


def _baseline(doc: Document, box: str, name: str, scheme: str | None = None, mode: str | None = None) -> float | None:
    found = [b["mb_per_s"] for b in doc.of("baseline", box=box, name=name)
             if (scheme is None or b["scheme"] == scheme) and (mode is None or b["mode"] == mode)]
    return median(found) if found else None


def _groups(doc: Document, scheme: str, mode: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for s in doc.of("scan", scheme=scheme, mode=mode):
        groups.setdefault((s["box"], s["writers"]), []).append(s)
    return groups


def _row(doc: Document, box: str, writers: int, runs: list[dict], one: float | None, scheme: str,
         mode: str) -> list[str]:
    speed = median(r["mb_per_s"] for r in runs)
    core = runs[0]["core"]
    ceiling = (_baseline(doc, box, "redis ceiling") if mode == "drain" else _baseline(doc, box, "publisher alone"))
    return [box, f"{writers} ({writers + 1})", spread((r["mb_per_s"] for r in runs), 1), num(speed / core),
            ratio(speed, one), ratio(speed, one * writers if one else None),
            ratio(speed, _baseline(doc, box, "single-process writer", scheme, mode)), ratio(speed, ceiling),
            spread((r["close_after_end_s"] for r in runs), 2),
            num(cpu_per_gb(runs, "writers"), 2), num(cpu_per_gb(runs, "rank0"), 2),
            *(throttled(runs, who) for who in ROLES)]


def scaling_scheme(doc: Document, scheme: str, mode: str) -> list[str]:
    groups = _groups(doc, scheme, mode)
    rows = []
    for (box, writers), runs in sorted(groups.items(), key=lambda kv: (runs_cores(kv[1]), kv[0][1])):
        one_runs = groups.get((box, 1))
        one = median(r["mb_per_s"] for r in one_runs) if one_runs else None
        rows.append(_row(doc, box, writers, runs, one, scheme, mode))
    limit = "× Redis ceiling" if mode == "drain" else "× publisher alone"
    return table(["box", "writers (ranks)", "MB/s", "÷ core: real-core MB/s", "× 1 writer", "× (writers × 1 writer)",
                  "× single-process writer", limit, "file closed after end s", "writers CPU s/GB", "rank 0 CPU s/GB",
                  "throttled: publisher", "Redis", "rank 0", "writers (most)"], rows)


def runs_cores(runs: list[dict[str, Any]]) -> int:
    return runs[0]["cores"]


def scaling_baselines(doc: Document) -> list[str]:
    rows = []
    for box in doc.of("box"):
        name = box["name"]
        cells = [name, num(box["core"], 3), num(_baseline(doc, name, "publisher alone"), 1),
                 num(_baseline(doc, name, "redis ceiling"), 1)]
        for scheme in doc.params["compression"]:
            cells += [num(_baseline(doc, name, "h5py-serial", scheme), 1),
                      " / ".join(num(_baseline(doc, name, "single-process writer", scheme, m), 1)
                                 for m in doc.params["modes"])]
        rows.append(cells)
    head = ["box", "real core each", "publisher alone MB/s", "Redis ceiling MB/s"]
    for scheme in doc.params["compression"]:
        head += [f"{scheme} h5py-serial", f"{scheme} single-process writer ({' / '.join(doc.params['modes'])})"]
    return table(head, rows)


def _cpu_stat(runs: list[dict[str, Any]], who: str) -> str:
    """nr_throttled / nr_periods (throttled_time) of a role's slice(s), summed over the runs."""
    names = lambda use: [n for n in use if n.startswith("writer")] if who == "writers" else [who]  # noqa: E731
    picked = [r["use"][n] for r in runs for n in names(r["use"]) if r["use"].get(n, {}).get("periods") is not None]
    if not picked:
        return "-"
    return (f"{sum(u['throttled'] for u in picked)}/{sum(u['periods'] for u in picked)} "
            f"({sum(u['throttled_s'] for u in picked):.2f} s)")


def scaling_throttling(doc: Document) -> list[str]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for s in doc.of("scan"):
        groups.setdefault((s["cores"], s["box"], s["scheme"], s["mode"], s["writers"]), []).append(s)
    rows = [[box, scheme, mode, writers, *(_cpu_stat(runs, who) for who in ROLES)]
            for (_, box, scheme, mode, writers), runs in sorted(groups.items())]
    return table(["box", "scheme", "mode", "writers", "publisher", "Redis", "rank 0", "writer ranks (together)"], rows)


def scaling(doc: Document) -> list[str]:
    out = header(doc) + ["Same-run baselines, in each box's slices (MB/s; single-process = one core of the box):", ""]
    out += scaling_baselines(doc) + [""]
    for scheme in doc.params["compression"]:
        for mode in doc.params["modes"]:
            out += [f"**{scheme}, {mode}** (median of {doc.params['repeat']}; throttled = share of the scan's "
                    "enforcement periods in which the slice ran out of quota):", ""]
            out += scaling_scheme(doc, scheme, mode) + [""]
    if doc.slices or any(b["slices"] for b in doc.of("box")):
        out += ["The slices' throttling (cpu.stat: throttled periods / periods, and throttled time, every scan of "
                "the configuration together):", ""] + scaling_throttling(doc) + [""]
    return out


# -- emulation ---------------------------------------------------------------------------------------
def emulation_quota(doc: Document) -> list[str]:
    free = doc.of("cpu-bound", quota=None)
    free_rate = median(r["work_per_cpu_s"] for r in free)
    rows = [[num(r["quota"], 3) if r["quota"] else "none", r["period_ms"], num(r["wall_s"], 1),
             num(r["cpu_s"] / r["wall_s"], 3), num(r["rate"], 0), num(r["quota"] * free_rate, 0) if r["quota"] else "-",
             ratio(r["rate"], r["quota"] * free_rate) if r["quota"] else "-", r.get("throttled", "-")]
            for r in doc.of("cpu-bound")]
    return table(["quota (cores)", "period ms", "wall s", "cores used", "work/s", "quota × work per CPU-s unlimited",
                  "ratio", "periods throttled"], rows)


def emulation_waits(doc: Document) -> list[str]:
    rows = [[r["variant"], num(r["quota"], 3) if r["quota"] else "none", num(r["wait_s"], 2),
             num(r["cpu_s"] / r["wait_s"], 2), num(r["latency_ms"], 2)] for r in doc.of("mpi-wait")]
    return table(["how rank 0 waits", "rank 0 quota", "wait s", "cores burnt while waiting",
                  "wake-up latency ms"], rows)


def emulation_unscaled(doc: Document) -> list[str]:
    rows = [[r["what"], num(r["quota"], 3) if r["quota"] else "none", num(r["mb_per_s"], 0),
             num(r["mb_per_cpu_s"], 0)] for r in doc.of("unscaled")]
    return table(["what", "quota (cores)", "MB/s", "MB per CPU-second"], rows)


def emulation_neighbours(doc: Document) -> list[str]:
    alone = [r["mb_per_cpu_s"] for r in doc.of("neighbours", processes=1)]
    rows = [[r["processes"], num(r["quota"], 2), num(r["cores_used"], 2), num(r["mb_per_cpu_s"], 1),
             ratio(r["mb_per_cpu_s"], alone[0]) if alone else "-"] for r in doc.of("neighbours")]
    return table(["processes at once", "quota each (cores)", "cores used together", "MB per CPU-second each",
                  "× one alone"], rows)


def emulation(doc: Document) -> list[str]:
    out = (header(doc) + ["A CPU-bound process (sha256 of 1 MiB blocks) at quota q against q × its work per "
                          "CPU-second unlimited:", ""] + emulation_quota(doc) +
           ["", "An MPI rank waiting (rank 1 sleeps, then joins): CPU it burns and how late it wakes:", ""] +
           emulation_waits(doc) + ["", "What the slices do not scale:", ""] + emulation_unscaled(doc) + [""])
    if doc.of("neighbours"):
        out += ["Neighbours: processes compressing byte-shuffled 512² frames (zlib level 4) at once, each in "
                "its own slice:", ""] + emulation_neighbours(doc) + [""]
    return out


# -- stages ----------------------------------------------------------------------------------------
def stages(doc: Document) -> list[str]:
    from ..model import StageCosts, project

    out = header(doc)
    for run in doc.of("stage-costs"):
        costs = StageCosts(**run["costs"])
        out += [f"**{costs.scheme}** (CPU seconds per GiB of frames, each stage alone):", ""]
        out += table(["stage", "CPU s/GiB", "GiB/s per core"],
                     [[name, num(v, 3), num(1 / v if v > 0 else float("inf"), 2)] for name, v in costs.rows()])
        out += ["", "Projection (not a measurement; the model in perf/model.py):", ""]
        rows = []
        for cores in (4, 8, 16):
            for live in (False, True):
                p = project(costs, cores, live)
                rows.append([cores, cores - 1, "live" if live else "drain", num(p["writers (stages)"]),
                             num(p["redis server"]), num(p["rank 0"]), f"**{num(p['projected (stages)'])}**"])
        out += table(["cores", "writers", "mode", "writers' limit", "Redis limit", "rank-0 limit", "projected MB/s"],
                     rows) + [""]
    return out


RENDERERS = {"scaling": scaling, "emulation": emulation, "stages": stages}
