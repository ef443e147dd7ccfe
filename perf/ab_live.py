"""A/B of writer-side settings in live mode, interleaved and paired with the publisher alone.

    python -m perf.ab_live --ranks 2 --frames 500 --repeat 5 --variant NXPAR_DIRECT_READS=0

One service for the default and one per `--variant` (environment given to the MPI job), started
side by side on one stack. Each round runs, back to back: the same publisher alone (session no
writer serves), then one live scan through every service, so every figure has a same-conditions
partner on a noisy shared machine. Prints MB/s and the ratio to the publisher alone per variant.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import numpy as np
import psutil

from perf.bench_stack import bench_stack, free_stream_data
from perf.profile_live import writer_ranks


class CpuMeter:
    """Core-seconds (user + system, from the kernel's accounting) of the publisher (this process),
    redis-server and every rank of one service, between start() and stop()."""

    def __init__(self, instance: str, redis_port: str) -> None:
        self.procs = {"publisher": psutil.Process()}
        for p in psutil.process_iter(["name", "cmdline"]):
            if p.info["name"] == "redis-server" and f":{redis_port}" in " ".join(p.info["cmdline"] or []):
                self.procs["redis"] = p  # this stack's (the port is in its process title)
        for name, pid in writer_ranks(instance).items():
            self.procs["rank 0" if name == "rank0" else f"writer {name}"] = psutil.Process(pid)

    def _now(self) -> dict[str, float]:
        out = {}
        for name, p in self.procs.items():
            t = p.cpu_times()
            out[name] = t.user + t.system
        return out

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self) -> dict[str, float]:
        t1 = self._now()
        spent = {k: t1[k] - self._t0[k] for k in t1}
        writers = sum(v for k, v in spent.items() if k.startswith("writer "))
        return {"publisher": spent["publisher"], "redis": spent.get("redis", 0.0),
                "rank 0": spent.get("rank 0", 0.0), "writer ranks": writers}


def _cpu_table(cpu: dict[str, list[dict[str, float]]], gbytes: float) -> None:
    """Median core-seconds per GB of frames, per process group and variant, and the ceiling they imply:
    2 cores / (total core-seconds per GB)."""
    print("\n| variant | publisher core-s/GB | redis core-s/GB | rank 0 core-s/GB | writer ranks core-s/GB | total | "
          "2-core ceiling MB/s |")
    print("|---|---|---|---|---|---|---|")
    for v, runs in cpu.items():
        med = {k: statistics.median(r[k] for r in runs) / gbytes for k in runs[0]}
        total = sum(med.values())
        print(f"| {v} | {med['publisher']:.2f} | {med['redis']:.2f} | {med['rank 0']:.2f} | {med['writer ranks']:.2f} | "
              f"{total:.2f} | "
              f"{2 * 1024 / total:.0f} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--compression", default="lz4-bitshuffle")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--preload", action="store_true",
                   help="drain instead of live: every frame in Redis before the writer may start (the ratio to the "
                        "publisher alone is then meaningless)")
    p.add_argument("--json", default=None, help="write the medians (MB/s, ratios, core-seconds per GB) here")
    p.add_argument("--variant", action="append", default=[], help="KEY=VALUE[,KEY=VALUE]: environment of one service")
    args = p.parse_args(argv)

    from launch.simulate import realistic_frames
    from perf.replay_scan import publish_alone, replay

    shape = tuple(args.shape)
    pool = realistic_frames(16, shape, args.dtype)
    variants = {"default": {}} | {v: dict(kv.split("=", 1) for kv in v.split(",")) for v in args.variant}
    alone, speeds, lags = [], {v: [] for v in variants}, {v: [] for v in variants}
    cpu: dict[str, list[dict[str, float]]] = {"publisher alone": []} | {v: [] for v in variants}
    with bench_stack("nxpar-ab-") as (stack, url, base):
        proxies, meters = {}, {}
        for n, (name, env) in enumerate(variants.items()):
            dev = stack.register(f"ab{n}", f"ab{n}")
            stack.start_service(f"ab{n}", args.ranks, "WARNING", extra_env=env)
            proxies[name] = (f"ab{n}", stack.wait_device(dev))
            meters[name] = CpuMeter(f"ab{n}", url.rsplit(":", 1)[1])
        meters["publisher alone"] = CpuMeter("no service", url.rsplit(":", 1)[1])
        for i in range(args.repeat):
            meters["publisher alone"].start()
            alone.append(publish_alone(url, str(base / "alone.h5"), i + 1, args.frames, shape, args.dtype,
                                       args.compression, pool))
            cpu["publisher alone"].append(meters["publisher alone"].stop())
            free_stream_data(url)
            for name, (session, proxy) in proxies.items():
                meters[name].start()
                r = replay(proxy, url, session, str(base / f"{session}_{i}.h5"), i + 1, args.frames, shape,
                           args.dtype, args.compression, args.ranks, frame_pool=pool, preload=args.preload)
                if r.state != "OFF":
                    raise RuntimeError(f"{name}: scan ended {r.state}: {r.reason}")
                cpu[name].append(meters[name].stop())
                speeds[name].append(r.mb_per_s)
                lags[name].append(r.close_after_end_s)
                os.unlink(r.filename)
                free_stream_data(url)
            print(f"round {i + 1}: alone {alone[-1]:.0f} " + " ".join(f"{v} {speeds[v][-1]:.0f}" for v in variants),
                  flush=True)
    print(f"\n{args.frames} x {shape[0]}x{shape[1]} {args.dtype} {args.compression}, {args.ranks} ranks, "
          f"median of {args.repeat} (min-max); publisher alone {statistics.median(alone):.0f} MB/s\n")
    print("| variant | nxpar MB/s | × publisher alone (paired) | close after end s |\n|---|---|---|---|")
    for v in variants:
        ratios = [s / a for s, a in zip(speeds[v], alone)]
        print(f"| {v} | {statistics.median(speeds[v]):.0f} ({min(speeds[v]):.0f}-{max(speeds[v]):.0f}) | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{statistics.median(lags[v]):.2f} |")
    gbytes = args.frames * np.prod(shape) * np.dtype(args.dtype).itemsize / 1024**3
    _cpu_table(cpu, gbytes)
    if args.json:
        summary = {"label": f"{args.frames} x {shape[0]}x{shape[1]} {args.dtype} {args.compression}, {args.ranks} ranks",
                   "alone_mb_s": statistics.median(alone),
                   "variants": {v: {"mb_s": statistics.median(speeds[v]),
                                    "ratio": statistics.median(s / a for s, a in zip(speeds[v], alone))}
                                for v in variants},
                   "core_s_per_gb": {v: {k: statistics.median(r[k] for r in runs) / gbytes for k in runs[0]}
                                     for v, runs in cpu.items()}}
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
