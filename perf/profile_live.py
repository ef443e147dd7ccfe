"""Where the time goes in a live scan: py-spy on every process while a scan is published and written.

    python -m perf.profile_live --ranks 2 --frames 600

Starts its own stack, attaches `py-spy record` (raw collapsed stacks, 100 Hz, non-blocking) to each
NexusWriterService rank and to the publisher (this process), replays one live scan, and prints for
every process the share of wall time it was on CPU and its top functions by own time. Raw stacks go
to perf/out/profile/ (flame graphs: `py-spy record --format speedscope` or any collapsed-stack tool).
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "perf" / "out" / "profile"
RATE_HZ = 100


def writer_ranks(instance: str | None = None) -> dict[str, int]:
    """{'rank0': pid, …} of the running NexusWriterService processes (of one instance, if given)."""
    ranks = {}
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = p.info["cmdline"] or []
            if any("NexusWriterService" in c for c in cmd) and "mpirun" not in cmd[0] and \
                    (instance is None or instance in cmd):
                ranks[f"rank{(p.info['environ'] or {}).get('PMI_RANK', p.pid)}"] = p.pid
        except (psutil.Error, TypeError, IndexError):
            pass
    return dict(sorted(ranks.items()))


def summarise(raw: Path, seconds: float, top: int = 12) -> tuple[float, list[tuple[str, float]]]:
    """(CPU share of wall time, [(function, share of wall time)]) from py-spy's collapsed stacks.

    py-spy samples only threads that are running (not sleeping/waiting) unless --idle is given,
    so samples / (seconds × rate) is the share of the wall time some thread was busy.
    """
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        own[leaf.split(" (")[0] + " (" + leaf.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"] += n
    norm = seconds * RATE_HZ
    return total / norm, [(f, n / norm) for f, n in own.most_common(top)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--compression", default=None)
    p.add_argument("--idle", action="store_true", help="sample waiting threads too (where do the ranks wait?)")
    args = p.parse_args(argv)

    from launch.simulate import realistic_frames
    from launch.stack import Stack
    from perf.replay_scan import replay

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    OUT.mkdir(parents=True, exist_ok=True)
    rundir = ROOT / "run" / f"profile-{os.getpid()}"
    stack = Stack(rundir)
    recorders: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        proxy = stack.start_writer_stack("replay", "replay", args.ranks)
        pool = realistic_frames(16, tuple(args.shape), "uint16")
        targets = {**writer_ranks(), "publisher": os.getpid()}
        for name, pid in targets.items():
            raw = OUT / f"{name}.txt"
            cmd = [py_spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking",
                   "--format", "raw", "--output", str(raw)] + (["--idle"] if args.idle else [])
            recorders.append((name, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw))
        time.sleep(1.0)  # py-spy attached
        procs = {name: psutil.Process(pid) for name, pid in targets.items()}
        procs.update({f"redis-server {i}": p for i, p in enumerate(
            p for p in psutil.process_iter(["name"]) if p.info["name"] == "redis-server")})
        cpu0 = {name: sum(proc.cpu_times()[:2]) for name, proc in procs.items()}
        t0 = time.perf_counter()
        r = replay(proxy, stack.env["REDIS_DATA_URL"], "replay", str(rundir / "data" / "scan.h5"), 1, args.frames,
                   tuple(args.shape), "uint16", args.compression, args.ranks, frame_pool=pool)
        seconds = time.perf_counter() - t0
        cpu = {name: (sum(proc.cpu_times()[:2]) - cpu0[name]) / seconds for name, proc in procs.items()}
        for _, proc, _ in recorders:
            proc.send_signal(signal.SIGINT)
        for _, proc, _ in recorders:
            proc.wait(timeout=30)
        print(f"{r.state}: {r.frames} frames, {r.mb_per_s:.0f} MB/s live, ranks={args.ranks}, "
              f"publisher alone {r.frames * r.shape[0] * r.shape[1] * 2 / 2**20 / r.publish_s:.0f} MB/s "
              f"while writing; profiled {seconds:.1f} s")
        print("CPU used (cores, from the kernel's accounting): " +
              ", ".join(f"{name} {share:.2f}" for name, share in cpu.items()) + f"; total {sum(cpu.values()):.2f}")
        for name, _, raw in recorders:
            if not raw.exists():
                print(f"\n{name}: no profile (py-spy could not attach)")
                continue
            busy, top = summarise(raw, seconds)
            print(f"\n{name}: sampled busy {busy:.0%} of the wall time (runnable, incl. waiting for a core); "
                  "own time by function:")
            for func, share in top:
                print(f"  {share:6.1%}  {func}")
    finally:
        for _, proc, _ in recorders:
            if proc.poll() is None:
                proc.kill()
        stack.down()


if __name__ == "__main__":
    main()
