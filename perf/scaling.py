"""`make bench-scaling`: nxpar's throughput against the number of writer ranks, with same-run baselines,
the CPU cost of each stage, and the projection those costs give for 8 and 16 cores.

    python -m perf.scaling                                    # 1 … cores−1 writers, 3 schemes, drain + live
    python -m perf.scaling --frames 40 --shape 256 256 --max-writers 2 --repeat 1 --out perf/out/scaling-small

For each compression scheme: the baselines of perf/bench.py (h5py-serial, filter on one core, Redis
read, live relay, live single-process writer), then one service per writer count (ranks = writers + 1)
writing the same scan in drain mode (all data in Redis before PREPARED) and live mode (published while
written); the CPU time of every rank and of the Redis server is taken around each scan (psutil).
Writes OUT/scaling.md (tables), OUT/runs.jsonl (raw) and OUT/<scheme>.png (throughput and efficiency vs
writers; needs matplotlib, otherwise the tables only).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from perf.bench_stack import bench_stack, free_stream_data
from perf.stage_costs import GB, ROWS_PER_WRITER, StageCosts, measure, proc_cpu, project

ROOT = Path(__file__).resolve().parent.parent
SCHEMES = ["lz4-bitshuffle", "gzip-byteshuffle", "blosc-zstd"]


@dataclass
class Point:
    scheme: str
    mode: str
    writers: int
    mb_per_s: list[float] = field(default_factory=list)
    cpu_s_per_gb: dict[str, float] = field(default_factory=dict)  # rank0, writers (sum), redis
    rank0_per_step: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.mb_per_s)


def rank_pids(instance: str) -> dict[int, int]:
    """MPI rank → pid of one service's processes."""
    import psutil

    pids = {}
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd, env = p.info["cmdline"] or [], p.info["environ"] or {}
        except Exception:
            continue
        if "PMI_RANK" in env and instance in cmd and any("NexusWriterService" in c for c in cmd):
            pids[int(env["PMI_RANK"])] = p.pid
    return pids


def cpu_of(pids: dict) -> dict:
    return {key: proc_cpu(pid) for key, pid in pids.items()}


def baselines(url: str, pool: np.ndarray, frames: int, scheme: str, base: Path, live: bool,
              repeat: int) -> dict[str, float]:
    """perf/bench.py's single-process baselines, this machine, now (MB/s, median)."""
    from perf.bench import bench_live_reader, bench_redis, bench_serial_h5py

    out: dict[str, list[float]] = {"h5py-serial": [], "filter (1 core)": [], "redis read": []}
    if live:
        out |= {"live relay": [], "live single-process writer": []}
    for _ in range(repeat):
        out["h5py-serial"].append(bench_serial_h5py(pool, frames, scheme, str(base / "serial.h5")))
        out["filter (1 core)"].append(bench_serial_h5py(pool, frames, scheme, "mem.h5", driver="core"))
        out["redis read"].append(bench_redis(url, pool, frames)[1])
        if live:
            out["live relay"].append(bench_live_reader(url, pool, frames, None, ""))
            out["live single-process writer"].append(bench_live_reader(url, pool, frames, scheme,
                                                                       str(base / "live.h5")))
    return {k: statistics.median(v) for k, v in out.items()}


def run_writers(stack, url: str, redis_pid: int, pool: np.ndarray, args, scheme: str, writers: int,
                base: Path, free_redis) -> list[Point]:
    """One service with `writers` writer ranks: every mode, `repeat` scans each."""
    from perf.replay_scan import replay

    instance = f"scal{writers}_{scheme.replace('-', '_')}"
    dev = stack.register(instance, instance)
    stack.start_service(instance, writers + 1, "WARNING")
    points = []
    try:
        proxy = stack.wait_device(dev)
        pids = rank_pids(instance)
        scan_nb = 0
        for mode in args.modes:
            point = Point(scheme, mode, writers)
            cpu: dict[str, list[float]] = {"rank 0": [], "writers": [], "redis": []}
            for _ in range(args.repeat):
                scan_nb += 1
                before = cpu_of(pids | {"redis": redis_pid})
                r = replay(proxy, url, instance, str(base / f"{instance}_{scan_nb}.h5"), scan_nb, args.frames,
                           tuple(args.shape), args.dtype, scheme, writers + 1, frame_pool=pool,
                           preload=mode == "drain")
                after = cpu_of(pids | {"redis": redis_pid})
                if r.state != "OFF":
                    raise RuntimeError(f"scan ended {r.state}: {r.reason}")
                gb = r.frames * pool[0].nbytes / GB
                used = {k: after[k] - before[k] for k in after}
                cpu["rank 0"].append(used[0] / gb)
                cpu["writers"].append(sum(v for k, v in used.items() if k not in (0, "redis")) / gb)
                cpu["redis"].append(used["redis"] / gb)
                point.rank0_per_step.append(used[0] / math.ceil(r.frames / (ROWS_PER_WRITER * writers)))
                point.mb_per_s.append(r.mb_per_s)
                with open(args.out / "runs.jsonl", "a") as fh:
                    fh.write(json.dumps({**asdict(r), "mode": mode, "writers": writers, "cpu_s": used}) + "\n")
                os.unlink(r.filename)
                free_redis()
            point.cpu_s_per_gb = {k: statistics.median(v) for k, v in cpu.items()}
            points.append(point)
    finally:
        stack.stop_service(instance)
    return points


# -- the report ----------------------------------------------------------------------------------------
def scaling_table(scheme: str, points: list[Point], base: dict[str, float]) -> list[str]:
    refs = {"drain": base["h5py-serial"], "live": base.get("live single-process writer", float("nan"))}
    lines = ["| mode | writers (ranks) | MB/s median (min-max) | speed-up vs 1 writer | efficiency | "
             "× single-process | CPU s/GB rank 0 | CPU s/GB writers | CPU s/GB Redis |", "|---" * 9 + "|"]
    for p in points:
        one = next(q.median for q in points if q.mode == p.mode and q.writers == 1) if any(
            q.mode == p.mode and q.writers == 1 for q in points) else float("nan")
        c = p.cpu_s_per_gb
        lines.append(f"| {p.mode} | {p.writers} ({p.writers + 1}) | {p.median:.0f} ({min(p.mb_per_s):.0f}-"
                     f"{max(p.mb_per_s):.0f}) | {p.median / one:.2f} | {p.median / one / p.writers:.2f} | "
                     f"{p.median / refs[p.mode]:.2f} | {c['rank 0']:.2f} | {c['writers']:.2f} | {c['redis']:.2f} |")
    return lines


def stage_table(c: StageCosts, writers: int) -> list[str]:
    rows = [("Redis read, writer side (client)", c.redis_read_client),
            ("Redis read, server side (one Redis core for all writers)", c.redis_read_server),
            ("Redis publish, server side (live mode)", c.redis_publish_server),
            ("decode (entries → numpy rows)", c.decode), (f"filter ({c.scheme})", c.filter),
            ("HDF5 write (mpio, collective, 1 rank, to disk; − the filter's in-memory run, 0 when below it)",
             c.hdf5_write),
            (f"collective agreement ({c.agreement_per_step * 1e3:.2f} ms CPU per step and writer)",
             c.agreement_per_gb(writers)),
            (f"rank-0 work ({c.rank0_per_step * 1e3:.2f} ms CPU per step; per GB with {writers} writers)",
             c.rank0_per_gb(writers))]
    lines = ["| stage | CPU s per GB | GB/s per core |", "|---|---|---|"]
    for name, value in rows:
        lines.append(f"| {name} | {value:.3f} | {1 / value if value > 0 else float('inf'):.2f} |")
    lines.append(f"| **one writer rank, all its stages** | {c.writer_per_gb(writers):.3f} | "
                 f"{1 / c.writer_per_gb(writers):.2f} |")
    return lines


def projection_table(c: StageCosts, modes: list[str], cores_here: int) -> list[str]:
    lines = ["| cores | writers | mode | writers' limit, stages | writers' limit, service | Redis server limit | "
             "rank-0 limit | **projected MB/s** (service … stages) |", "|---" * 8 + "|"]
    for cores in sorted({cores_here, 8, 16}):
        for mode in modes:
            p = project(c, cores, live=mode == "live")
            lines.append(f"| {cores} | {max(cores - 1, 1)} | {mode} | {p['writers (stages)']:.0f} | "
                         f"{p['writers (service)']:.0f} | {p['redis server']:.0f} | {p['rank 0']:.0f} | "
                         f"**{p['projected (service)']:.0f} … {p['projected (stages)']:.0f}** |")
    return lines


def plot(scheme: str, points: list[Point], base: dict[str, float], path: Path) -> str:
    """throughput and efficiency vs writers, baselines as horizontal lines; '' or why no plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no PNG plots (`pip install matplotlib` in the venv)"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in sorted({p.mode for p in points}):
        pts = sorted((p for p in points if p.mode == mode), key=lambda p: p.writers)
        xs = [p.writers for p in pts]
        ax1.plot(xs, [p.median for p in pts], "o-", label=f"nxpar {mode}")
        ax1.fill_between(xs, [min(p.mb_per_s) for p in pts], [max(p.mb_per_s) for p in pts], alpha=0.2)
        one = pts[0].median if pts and pts[0].writers == 1 else float("nan")
        ax2.plot(xs, [p.median / one / p.writers for p in pts], "o-", label=f"nxpar {mode}")
    for i, (name, value) in enumerate(sorted(base.items())):
        ax1.axhline(value, ls="--", lw=1, color=f"C{i + 2}", label=name)
    ax1.set(xlabel="writer ranks", ylabel="MB/s (uncompressed, log scale)", title=f"{scheme}: throughput",
            yscale="log")
    ax1.set_xticks(sorted({p.writers for p in points}))
    ax2.set_xticks(sorted({p.writers for p in points}))
    ax2.set(xlabel="writer ranks", ylabel="speed-up / writers", title=f"{scheme}: efficiency", ylim=(0, 1.2))
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ""


def replot(out: Path) -> None:
    """The PNGs again from OUT/runs.jsonl (e.g. with another Python that has matplotlib)."""
    points: dict[tuple[str, str, int], Point] = {}
    bases: dict[str, dict[str, float]] = {}
    for line in (out / "runs.jsonl").read_text().splitlines():
        run = json.loads(line)
        if "baselines" in run:
            bases[run["scheme"]] = run["baselines"]
            continue
        key = (run["compression"], run["mode"], run["writers"])
        points.setdefault(key, Point(*key)).mb_per_s.append(run["mb_per_s"])
    md_path = out / "scaling.md"
    md = md_path.read_text() if md_path.exists() else ""
    for scheme, base in bases.items():
        why = plot(scheme, [p for k, p in points.items() if k[0] == scheme], base, out / f"{scheme}.png")
        print(why or f"written: {out / f'{scheme}.png'}")
        if not why:  # the run's note that there were no plots becomes the plot (schemes in run order)
            md = re.sub(r"^\(matplotlib is not installed[^\n]*\)$", f"![{scheme}]({scheme}.png)", md, count=1,
                        flags=re.M)
    if md:
        md_path.write_text(md)


def machine() -> str:
    import platform

    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()}, {os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}"


def report_scheme(scheme: str, points: list[Point], base: dict[str, float], costs: StageCosts, args) -> list[str]:
    md = [f"\n## {scheme}\n", "Same-run single-process baselines (MB/s): " +
          ", ".join(f"{k} {v:.0f}" for k, v in base.items()) + ".\n"]
    md += scaling_table(scheme, points, base)
    why = plot(scheme, points, base, args.out / f"{scheme}.png")
    md.append(f"\n![{scheme}]({scheme}.png)\n" if not why else f"\n({why})\n")
    md += [f"\nPer-stage CPU cost ({args.frames} frames {args.shape[0]}x{args.shape[1]} {args.dtype}, measured "
           "here, each stage alone):\n"]
    md += stage_table(costs, args.max_writers)
    md += ["\n**Projection** (not a measurement): min(writers × one writer's rate, the Redis server's core, "
           "rank 0's core); one writer's rate from its CPU per GB in the service (1 writer, drain) … from the sum "
           "of the stages; Redis and BLISS on other machines, the file system not the limit, collective costs "
           "per step as measured with few ranks.\n"]
    md += projection_table(costs, args.modes, os.cpu_count() or 1)
    return md


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--compression", nargs="+", default=SCHEMES)
    p.add_argument("--modes", nargs="+", default=["drain", "live"], choices=["drain", "live"])
    p.add_argument("--max-writers", type=int, default=max((os.cpu_count() or 2) - 1, 1))
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "perf" / "scaling")
    p.add_argument("--replot", action="store_true", help="only redraw OUT/*.png from OUT/runs.jsonl")
    args = p.parse_args(argv)
    if args.replot:
        return replot(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.jsonl").unlink(missing_ok=True)

    from launch.simulate import realistic_frames

    pool = realistic_frames(16, tuple(args.shape), args.dtype)
    md = [f"# nxpar scaling: {args.frames} frames {args.shape[0]}x{args.shape[1]} {args.dtype}, "
          f"1…{args.max_writers} writers, {', '.join(args.modes)}, median of {args.repeat}\n",
          f"Machine: {machine()}.\n"]
    with bench_stack("nxpar-scaling-") as (stack, url, base_dir):
        redis_pid = int((stack.rundir / "redis.pid").read_text())

        def free_redis() -> None:
            free_stream_data(url)

        for scheme in args.compression:
            base = baselines(url, pool, args.frames, scheme, base_dir, "live" in args.modes, args.repeat)
            with open(args.out / "runs.jsonl", "a") as fh:
                fh.write(json.dumps({"scheme": scheme, "baselines": base}) + "\n")
            free_redis()
            costs = measure(url, redis_pid, pool, args.frames, scheme, base_dir, args.max_writers)
            points = [pt for w in range(1, args.max_writers + 1)
                      for pt in run_writers(stack, url, redis_pid, pool, args, scheme, w, base_dir, free_redis)]
            costs.rank0_per_step = statistics.median(s for pt in points for s in pt.rank0_per_step)
            costs.service_writer_per_gb = next((pt.cpu_s_per_gb["writers"] for pt in points
                                                if pt.writers == 1 and pt.mode == "drain"), math.nan)
            md += report_scheme(scheme, points, base, costs, args)
            (args.out / "scaling.md").write_text("\n".join(md) + "\n")
            print("\n".join(md[-40:]), flush=True)
    print(f"\nwritten: {args.out / 'scaling.md'}")


if __name__ == "__main__":
    main()
