"""Where the cores go, over time, during one live scan: busy cores per process and idle cores, sampled.

    python -m perf.timeline_live --ranks 2 --frames 500 --repeat 3

The live ratio (issue 11) is bounded by CPU only if the cores are busy all the time; this shows the
phases where they are not. Samples every 20 ms: /proc/stat (idle cores of the machine) and the
kernel's CPU accounting of the publisher (this process), redis-server and every rank. Phases:
`start` (publisher before its first frame reaches Redis), `overlap` (publisher sending), `tail`
(publisher done → file closed). Prints one table per scan; `--json` keeps the raw samples; the
service's own timeline is in its log with NXPAR_TL_LOG=INFO (run directory kept).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil

PERIOD_S = 0.02


def _idle_jiffies() -> tuple[float, float, float]:
    """(idle, iowait, total) jiffies of the whole machine."""
    with open("/proc/stat") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    return fields[3], fields[4], sum(fields[:8])


@dataclass
class Timeline:
    """Samples (t, idle cores, iowait cores, {process: cores}) between start() and stop()."""

    procs: dict[str, psutil.Process]
    samples: list[tuple[float, float, float, dict[str, float]]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ncpu = psutil.cpu_count()

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, p in self.procs.items():
            try:
                t = p.cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:
                out[name] = 0.0
        return out

    def _run(self) -> None:
        t_prev, (idle_prev, wait_prev, tot_prev), cpu_prev = time.perf_counter(), _idle_jiffies(), self._cpu()
        while not self._halt.wait(PERIOD_S):
            t, (idle, wait, tot), cpu = time.perf_counter(), _idle_jiffies(), self._cpu()
            dt, jiffies = t - t_prev, max(tot - tot_prev, 1e-9)
            self.samples.append((t, self._ncpu * (idle - idle_prev) / jiffies, self._ncpu * (wait - wait_prev) / jiffies,
                                 {k: (cpu[k] - cpu_prev[k]) / dt for k in cpu}))
            t_prev, idle_prev, wait_prev, tot_prev, cpu_prev = t, idle, wait, tot, cpu

    def start(self) -> None:
        self._thread.start()

    def mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    def stop(self) -> None:
        self._halt.set()
        self._thread.join()

    def phases(self, bounds: list[tuple[str, str, str]]) -> list[tuple[str, float, float, float, dict[str, float]]]:
        """[(phase, seconds, mean idle cores, mean iowait cores, {process: mean cores})] between pairs of marks."""
        rows = []
        for phase, a, b in bounds:
            t0, t1 = self.marks[a], self.marks[b]
            inside = [s for s in self.samples if t0 < s[0] <= t1]
            n = max(len(inside), 1)
            per = {k: sum(s[3][k] for s in inside) / n for k in self.procs}
            rows.append((phase, t1 - t0, sum(s[1] for s in inside) / n, sum(s[2] for s in inside) / n, per))
        return rows


def _perf_record(prefix: str | None, n: int, procs: dict[str, psutil.Process]) -> subprocess.Popen | None:
    """Linux `perf` on the last writer rank (read with `perf report -i PREFIX<n> --no-children`)."""
    if not prefix:
        return None
    rank = procs[max(k for k in procs if k.startswith("rank"))]
    rec = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(rank.pid),
                            "-o", f"{prefix}{n}"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached
    return rec


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--compression", default="lz4-bitshuffle")
    p.add_argument("--json", default=None)
    p.add_argument("--perf", default=None, metavar="PREFIX",
                   help="`perf record` (DWARF call graphs) the last writer rank during each written scan: PREFIX<n>")
    args = p.parse_args(argv)

    from launch.simulate import ScanPublisher, ScanSpec, realistic_frames
    from perf.bench_stack import bench_stack, free_stream_data
    from perf.profile_live import writer_ranks

    shape = (1024, 1024)
    pool = realistic_frames(16, shape, "uint16")
    raw = []
    with bench_stack("nxpar-timeline-", keep=bool(os.environ.get("NXPAR_TL_LOG"))) as (stack, url, base):
        dev = stack.register("tl", "tl")
        stack.start_service("tl", args.ranks, os.environ.get("NXPAR_TL_LOG", "WARNING"))
        proxy = stack.wait_device(dev)
        procs = {"publisher": psutil.Process()}
        procs |= {p.info["name"]: p for p in psutil.process_iter(["name", "cmdline"])
                  if p.info["name"] == "redis-server" and url.rsplit(":", 1)[1] in " ".join(p.info["cmdline"])}
        procs |= {name: psutil.Process(pid) for name, pid in writer_ranks("tl").items()}
        opts = {"compression_scheme": args.compression}
        for i in range(args.repeat):
            for session in ("nobody_writes", "tl"):
                spec = ScanSpec(session, str(base / f"{session}{i}.h5"), i + 1, args.frames, image_shape=shape,
                                image_dtype="uint16", mca_channels=None, chunk_options=opts)
                pub = ScanPublisher(url, spec, pool)
                while session == "tl" and not proxy.scan_exists(spec.name):
                    time.sleep(0.02)
                tl = Timeline(procs)
                rec = _perf_record(args.perf, i, procs) if session == "tl" else None
                tl.start()
                tl.mark("t0")
                pub.prepare_start()
                tl.mark("started")
                pub.send(1)
                for s in pub.streams.values():
                    s.join()
                tl.mark("first frame")
                pub.send(args.frames - 1)
                for s in pub.streams.values():
                    s.join()
                tl.mark("sent")
                pub.stop_close()
                tl.mark("closed by publisher")
                while session == "tl" and str(proxy.scan_state(spec.name)) in ("INIT", "ON"):
                    time.sleep(0.01)
                tl.mark("file closed")
                tl.stop()
                if rec is not None:
                    rec.send_signal(signal.SIGINT)
                    rec.wait()
                total = tl.marks["file closed"] - tl.marks["t0"]
                mb_s = args.frames * 2 * 2**20 / 2**20 / total
                print(f"\nscan {i + 1} {session}: {total:.2f} s, {mb_s:.0f} MB/s")
                print("| phase | s | idle cores | iowait cores | " + " | ".join(procs) + " |")
                for phase, secs, idle, wait, per in tl.phases([("prepare+start", "t0", "started"),
                                                         ("first frame", "started", "first frame"),
                                                         ("frames", "first frame", "sent"),
                                                         ("stop+close", "sent", "closed by publisher"),
                                                         ("tail", "closed by publisher", "file closed")]):
                    print(f"| {phase} | {secs:.2f} | {idle:.2f} | {wait:.2f} | " +
                          " | ".join(f"{per[k]:.2f}" for k in procs) + " |")
                raw.append({"scan": i + 1, "session": session, "marks": tl.marks,
                            "samples": tl.samples})
                free_stream_data(url)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(raw, fh)


if __name__ == "__main__":
    main()
