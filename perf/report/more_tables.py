"""Tables of the smaller scenarios: ab, points, mosca, replay, timeline, profile, write_paths."""
from __future__ import annotations

from ..core.results import Document
from .markdown import cpu_per_gb, median, num, spread, table, throttled
from .tables import header


def writer_peak_rss(run: dict) -> float:
    """The largest writer rank's peak RSS; with one rank, rank 0's (it writes)."""
    peaks = [u["peak_rss_mb"] for n, u in run["use"].items() if n.startswith("writer")]
    return max(peaks) if peaks else run["use"]["rank0"]["peak_rss_mb"]


def ab(doc: Document) -> list[str]:
    p = doc.params
    alone = {r["round"]: r["mb_per_s"] for r in doc.of("alone")}
    mode = "drain (preloaded)" if p["preload"] else "live"
    out = header(doc) + [f"{p['frames']} frames {p['shape'][0]}×{p['shape'][1]} {p['dtype']} {p['compression']}, "
                         f"{p['ranks']} ranks, {mode}, median of {p['repeat']} rounds (min-max); publisher alone "
                         f"{spread(alone.values())} MB/s:", ""]
    rows = []
    for label in dict.fromkeys(r["variant"] for r in doc.of("scan")):
        runs = doc.of("scan", variant=label)
        paired = [r["mb_per_s"] / alone[r["round"]] for r in runs if r["round"] in alone]
        rows.append([label, spread(r["mb_per_s"] for r in runs), spread(paired, 2) if not p["preload"] else "-",
                     spread((r["close_after_end_s"] for r in runs), 2),
                     *(num(cpu_per_gb(runs, who), 2) for who in ("publisher", "redis", "rank0", "writers")),
                     num(sum(cpu_per_gb(runs, who) for who in ("publisher", "redis", "rank0", "writers")), 2),
                     num(median(writer_peak_rss(r) for r in runs)),
                     throttled(runs, "writers")])
    return out + table(["variant", "nxpar MB/s", "× publisher alone (paired)", "file closed after end s",
                        "CPU s/GB publisher", "Redis", "rank 0", "writer ranks", "total", "peak RSS writer rank MB",
                        "writer slice throttled"], rows) + [""]


def points(doc: Document) -> list[str]:
    from ..scenarios.points import SCENARIOS

    out = header(doc)
    for name in doc.params["scenario"]:
        sc, runs = SCENARIOS[name], doc.of("points", scenario=name)
        base = [r for r in runs if r["writer"] == "single-process"]
        target = max(0.5, 2 * median(r["lag_s"] for r in base)) if base else 0.5
        pace = "flat out" if not sc.rate_hz else f"{sc.rate_hz:.0f} Hz"
        out += [f"**{name}**: {runs[0]['npoints'] if runs else sc.npoints} points, {sc.batch} points/event, {pace} "
                f"(median of {doc.params['repeat']}, min-max):", ""]
        groups: dict[tuple[str, int], list[dict]] = {}
        for r in runs:
            groups.setdefault((r["writer"], r["ranks"]), []).append(r)
        rows = []
        for (writer, ranks), rs in groups.items():
            lag = median(r["lag_s"] for r in rs)
            rows.append([writer, ranks, num(median(r["publish_rate_hz"] for r in rs)),
                         spread(r["points_per_s"] for r in rs),
                         num(median(r["points_per_s"] for r in rs) / median(r["points_per_s"] for r in base), 2)
                         if base else "-",
                         spread((r["lag_s"] for r in rs), 2),
                         f"{'met' if lag <= target else 'NOT met'} ({target:.2f})",
                         ", ".join(sorted({r["state"] for r in rs}))])
        out += table(["writer", "ranks", "published Hz", "written points/s", "× single-process", "lag after end s",
                      "lag ≤ max(0.5, 2× single)", "state"], rows) + [""]
    return out


def mosca(doc: Document) -> list[str]:
    from ..scenarios.mosca import CHANNELS, ELEMENTS, RATE_HZ

    runs = doc.of("copy")
    base = median(r["mb_per_s"] for r in runs if r["writer"] != "nxpar")
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["writer"], r["mode"], r["ranks"]), []).append(r)
    rows = [[writer, mode, ranks, spread(r["mb_per_s"] for r in rs),
             num(median(r["mb_per_s"] for r in rs) / base, 2), spread((r["lag_s"] for r in rs), 2), rs[-1]["state"]]
            for (writer, mode, ranks), rs in groups.items()]
    return header(doc) + [f"Mosca-like: {ELEMENTS} elements × {CHANNELS} uint32, {doc.params['points']} points, "
                          f"published at {RATE_HZ:.0f} Hz (paced) or at once (flat out):", ""] + \
        table(["writer", "mode", "ranks", "MB/s (first event → file closed)", "× single-process copy",
               "lag after end s", "state"], rows) + [""]


def timeline_phases(run: dict) -> list[list[str]]:
    from ..scenarios.timeline import PHASES

    marks, rows = run["marks"], []
    names = [n for n in (run["samples"][0][1] if run["samples"] else {}) if n not in ("idle", "iowait")]
    for phase, a, b in PHASES:
        if a not in marks or b not in marks:
            continue
        inside = [cores for t, cores in run["samples"] if marks[a] < t <= marks[b]]
        n = max(len(inside), 1)
        mean = {k: sum(c[k] for c in inside) / n for k in names + ["idle", "iowait"]}
        rows.append([phase, num(marks[b] - marks[a], 2), num(mean["idle"], 2), num(mean["iowait"], 2),
                     *(num(mean[k], 2) for k in names)])
    return rows


def timeline(doc: Document) -> list[str]:
    p = doc.params
    out = header(doc)
    for run in doc.of("timeline"):
        names = [n for n in (run["samples"][0][1] if run["samples"] else {}) if n not in ("idle", "iowait")]
        end = run["marks"].get("file closed", run["marks"]["closed"])
        mb_s = p["frames"] * p["shape"][0] * p["shape"][1] * (2 if p["dtype"].endswith("16") else 4) / 2**20 / (
            end - run["marks"]["begin"])
        out += [f"scan {run['scan']}, {run['session']}: {end - run['marks']['begin']:.2f} s, {mb_s:.0f} MB/s "
                "(cores used per phase, mean of 20 ms samples):", ""]
        out += table(["phase", "s", "idle cores", "iowait cores", *names], timeline_phases(run)) + [""]
    return out


def profile(doc: Document) -> list[str]:
    out = header(doc)
    for run in doc.of("scan"):
        out += [f"{run['state']}: {run['frames']} frames, {run['mb_per_s']:.0f} MB/s live, {run['ranks']} ranks, "
                f"publisher {run['publisher_mb_per_s']:.0f} MB/s while writing; profiled {run['seconds']:.1f} s. "
                "CPU used (cores, kernel accounting): " +
                ", ".join(f"{name} {u['cpu_s'] / run['seconds']:.2f}" for name, u in run["use"].items()), ""]
        for name, prof in run["profiles"].items():
            if prof is None:
                out += [f"{name}: no profile (py-spy could not attach)", ""]
                continue
            busy, top = prof
            out += [f"{name}: sampled busy {busy:.0%} of the wall time; own time by function:", "", "```"]
            out += [f"{share:6.1%}  {func}" for func, share in top] + ["```", ""]
    return out


def replay(doc: Document) -> list[str]:
    rows = [[r["mode"], r["ranks"], r["frames"], f"{r['frame_shape'][0]}×{r['frame_shape'][1]} {r['dtype']}",
             r["scheme"], num(r["mb_per_s"], 1), num(r["frames"] / r["seconds"], 1), num(r["compression_ratio"], 2),
             num(r["close_after_end_s"], 2),
             ", ".join(f"{n} {u['peak_rss_mb']:.0f}" for n, u in r["use"].items() if n.startswith(("rank", "writer"))),
             r["state"]] for r in doc.of("scan")]
    return header(doc) + table(["mode", "ranks", "frames", "frame", "scheme", "MB/s", "frames/s", "compression ratio",
                                "file closed after end s", "peak RSS per rank MB", "state"], rows) + [""]


def write_paths(doc: Document) -> list[str]:
    keys = list(dict.fromkeys((r["scheme"], r["chunks"], r["environment"]) for r in doc.of("path")))
    paths = list(dict.fromkeys(r["path"] for r in doc.of("path")))
    rows = [[scheme, chunks, env, *(spread((r["mb_per_s"] for r in doc.of("path", scheme=scheme, chunks=chunks,
                                                                          environment=env, path=p)))
                                    if doc.of("path", scheme=scheme, chunks=chunks, environment=env, path=p) else "-"
                                    for p in paths)]
            for scheme, chunks, env in keys]
    return header(doc) + [f"{doc.params['frames']} frames 1024² uint16 from memory, one process, 8 rows per write "
                          "(MB/s, file closed included):", ""] + table(["scheme", "chunks", "environment", *paths],
                                                                       rows) + [""]


RENDERERS = {"write_paths": write_paths, "replay": replay, "ab": ab, "points": points, "mosca": mosca,
             "timeline": timeline, "profile": profile}
