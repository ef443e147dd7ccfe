"""`make bench`: end-to-end nxpar throughput against baselines measured in the same run, same frames.

Baselines (single process, this machine, now):
  h5py-serial   one process writes the frames with the same filter and chunking (serial driver)
  filter        the same into an in-memory file (driver=core): filter throughput of one core
  redis-read    reading the frame stream back from Redis (8 frames per request), one process
  publish       BLISS's side: publishing the frames into Redis (the writer cannot beat it)
  disk          raw bytes to the data directory: page cache, and with fdatasync
  live relay    publishing while another process follows the stream (no HDF5): the live ceiling of any
                Redis-fed writer here, publisher, Redis and reader sharing the cores
  same publisher alone
                before every live nxpar run, the very publisher of that run (same scan, same frames) in a
                session no writer serves: "× same publisher alone" is the median of the paired ratios
  live single-process writer
                the same follower writing every frame with h5py + the filter: blisswriter's design,
                the single-process baseline for live mode

Results go to perf/out/bench.jsonl and a markdown table on stdout (pasted into perf/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from perf.bench_stack import bench_stack, frame_scan, free_stream_data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "perf" / "out"


def mb(nbytes: float) -> float:
    return nbytes / 1024**2


def bench_serial_h5py(frames: np.ndarray, n: int, scheme: str, path: str, driver: str | None = None) -> float:
    import h5py

    from nxpar.writers.filters import filter_kwargs

    kwargs = {"driver": "core", "backing_store": False} if driver == "core" else {}
    t0 = time.perf_counter()
    with h5py.File(path, "w", **kwargs) as f:
        d = f.create_dataset("data", shape=(n,) + frames.shape[1:], dtype=frames.dtype,
                             chunks=(1,) + frames.shape[1:], **filter_kwargs(scheme))
        for i in range(n):
            d[i] = frames[i % len(frames)]
    return mb(n * frames[0].nbytes) / (time.perf_counter() - t0)


def bench_disk(frames: np.ndarray, n: int, path: str, sync: bool) -> float:
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        for i in range(n):
            fh.write(frames[i % len(frames)].tobytes())
        if sync:
            fh.flush()
            os.fdatasync(fh.fileno())
    return mb(n * frames[0].nbytes) / (time.perf_counter() - t0)


def bench_redis(url: str, frames: np.ndarray, n: int) -> tuple[float, float]:
    """(publish MB/s, read MB/s) of one frame stream, one process each."""
    from blissdata.redis_engine.store import DataStore

    scan, stream, _ = frame_scan(url, "bench", "bench_baseline", frames)
    scan.start()
    t0 = time.perf_counter()
    for i in range(n):
        stream.send(frames[i % len(frames)][None])
    scan.stop()
    publish = mb(n * frames[0].nbytes) / (time.perf_counter() - t0)
    scan.close()
    ro = DataStore(url).load_scan(scan.key).streams["cam:image"].event_stream
    t0 = time.perf_counter()
    for start in range(0, n, 8):
        ro[start:min(start + 8, n)]
    read = mb(n * frames[0].nbytes) / (time.perf_counter() - t0)
    return publish, read


def _follow(url: str, key: str, n: int, scheme: str | None, path: str, done) -> None:
    """Child process: follow a live frame stream (8 frames per request at most), optionally writing
    each frame with h5py + the filter (a single-process live writer, blisswriter's design)."""
    from blissdata.redis_engine.store import DataStore

    stream = DataStore(url).load_scan(key).streams["cam:image"].event_stream
    dset = None
    if scheme:
        import h5py

        from nxpar.writers.filters import filter_kwargs
        f = h5py.File(path, "w")
        dset = f.create_dataset("data", shape=(n,) + tuple(stream.shape), dtype=stream.dtype,
                                chunks=(1,) + tuple(stream.shape), **filter_kwargs(scheme))
    got = 0
    while got < n:
        available = len(stream)
        if available <= got:
            time.sleep(0.001)
            continue
        rows = stream[got:min(available, got + 8)]
        if dset is not None:
            for i, row in enumerate(rows):
                dset[got + i] = row
        got += len(rows)
    if dset is not None:
        f.close()
    done.put(time.time())


def bench_live_reader(url: str, frames: np.ndarray, n: int, scheme: str | None, path: str,
                      follow: bool = True) -> float:
    """MB/s of a live relay: this process publishes (frames and the 4 scalars, as in the nxpar runs)
    while another follows the frame stream (and, with a scheme, writes it with h5py as one process
    would). Clock: first publish → last frame handled. follow=False: the publisher alone (nobody
    reads), first publish → last frame in Redis: the pace BLISS sets when no writer competes."""
    import multiprocessing

    # the scalars BLISS publishes with every frame (motor, timers, diode), as in the nxpar runs
    scan, stream, scalars = frame_scan(url, "relay", "bench_baseline", frames,
                                       ("axis:robx", "timer:elapsed_time", "timer:epoch", "diode_ctrl:diode"))
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Queue()
    follower = ctx.Process(target=_follow, args=(url, scan.key, n, scheme, path, done)) if follow else None
    if follower is not None:
        follower.start()
        time.sleep(2.0)  # the follower has imported and attached
    scan.start()
    t0 = time.time()
    for i in range(n):
        for scalar in scalars:
            scalar.send(np.array([float(i)]))
        stream.send(frames[i % len(frames)][None])
    for s in [stream, *scalars]:
        s.join()
    scan.stop()
    t_end = time.time()
    if follower is not None:
        t_end = done.get(timeout=600)
        follower.join()
    scan.close()
    return mb(n * frames[0].nbytes) / (t_end - t0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--compression", nargs="+", default=["lz4-bitshuffle"])
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration (median, min-max)")
    p.add_argument("--modes", nargs="+", default=["live", "drain"],
                   help="live: BLISS publishes while nxpar writes; drain: data in Redis before PREPARED")
    args = p.parse_args(argv)

    from launch.simulate import realistic_frames
    from perf.replay_scan import publish_alone, replay

    OUT.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    pool = realistic_frames(16, shape, args.dtype)
    label = f"{args.frames} x {shape[0]}x{shape[1]} {args.dtype}"
    rows = []
    with bench_stack("nxpar-bench-") as (stack, url, base):
        for scheme in args.compression:
            # -- baselines, same frames, same filter ----------------------------------------------
            serial = [bench_serial_h5py(pool, args.frames, scheme, str(base / "serial.h5")) for _ in range(args.repeat)]
            filt = [bench_serial_h5py(pool, args.frames, scheme, "mem.h5", driver="core") for _ in range(args.repeat)]
            disk_cache = [bench_disk(pool, args.frames, str(base / "raw.bin"), False) for _ in range(args.repeat)]
            disk_sync = [bench_disk(pool, args.frames, str(base / "raw.bin"), True) for _ in range(args.repeat)]
            pr, alone, relay, live_serial = [], [], [], []
            for _ in range(args.repeat):
                pr.append(bench_redis(url, pool, args.frames))
                free_stream_data(url)
                if "live" in args.modes:
                    alone.append(bench_live_reader(url, pool, args.frames, None, "", follow=False))
                    free_stream_data(url)
                    relay.append(bench_live_reader(url, pool, args.frames, None, ""))
                    free_stream_data(url)
                    live_serial.append(bench_live_reader(url, pool, args.frames, scheme, str(base / "live.h5")))
                    free_stream_data(url)
            baselines = {"h5py-serial": serial, "filter (1 core)": filt, "disk page cache": disk_cache,
                         "disk fdatasync": disk_sync, "redis publish": [a for a, _ in pr],
                         "redis read": [b for _, b in pr]}
            if "live" in args.modes:
                baselines["live publisher alone (no reader)"] = alone
                baselines["live relay (publish + follow)"] = relay
                baselines["live single-process writer"] = live_serial
            ref = statistics.median(serial)
            # -- nxpar end to end: one service per rank count, stream data freed after each run
            paired_alone: dict[int, list[float]] = {}  # ranks → same-publisher-alone MB/s before each live run
            for ranks in args.ranks:
                instance = f"bench{ranks}_{scheme.replace('-', '_')}"
                dev = stack.register(instance, instance)
                stack.start_service(instance, ranks, "WARNING")
                proxy = stack.wait_device(dev)
                scan_nb = 0
                for mode in args.modes:
                    results = []
                    for i in range(args.repeat):
                        scan_nb += 1
                        if mode == "live":  # the same publisher alone, just before: paired, same conditions
                            paired_alone.setdefault(ranks, []).append(publish_alone(
                                url, str(base / "alone.h5"), scan_nb, args.frames, shape, args.dtype, scheme, pool))
                            free_stream_data(url)
                        r = replay(proxy, url, instance, str(base / f"r{ranks}_{scan_nb}.h5"), scan_nb,
                                   args.frames, shape, args.dtype, scheme, ranks, frame_pool=pool,
                                   preload=mode == "drain")
                        if r.state != "OFF":
                            raise RuntimeError(f"bench scan ended {r.state}: {r.reason}")
                        results.append(r)
                        with open(OUT / "bench.jsonl", "a") as fh:
                            fh.write(json.dumps({**asdict(r), "label": label, "mode": mode}) + "\n")
                        os.unlink(r.filename)
                        free_stream_data(url)
                    speeds = [r.mb_per_s for r in results]
                    rows.append((scheme, mode, ranks, speeds, None,
                                 statistics.median([r.compression_ratio for r in results]),
                                 max(max(r.peak_rss_mb.values()) for r in results),
                                 statistics.median([r.close_after_end_s for r in results])))
                stack.stop_service(instance)
            print(f"\n### {label}, {scheme} (median of {args.repeat}, min-max)\n")
            print("| baseline | MB/s |\n|---|---|")
            for name, values in baselines.items():
                print(f"| {name} | {statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f}) |")
            limits = {"drain": 1 / (1 / statistics.median(baselines["redis read"]) + 1 / statistics.median(filt))}
            refs = {"drain": ref}
            if "live" in args.modes:
                limits["live"] = statistics.median(relay)
                refs["live"] = statistics.median(live_serial)
            live_limit = (f"live = the live relay, publisher + one follower sharing Redis and the cores "
                          f"({limits['live']:.0f} MB/s); ") if "live" in limits else ""
            print(f"\nbinding limit per mode: {live_limit}drain = one core reading + compressing "
                  f"({limits['drain']:.0f} MB/s per writer core). Single-process baseline: "
                  f"{'live = the live single-process writer, ' if 'live' in limits else ''}"
                  "drain = h5py-serial from memory.")
            print("\n| mode | ranks (writers) | nxpar MB/s | × binding limit | × single-process | "
                  "× same publisher alone (paired) | × 1 rank | compression ratio | peak RSS/rank MB | close after end s |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            for s, mode, ranks, speeds, _, cr, rss, close in rows:
                if s != scheme:
                    continue
                one = next((statistics.median(sp) for s2, m2, r2, sp, *_ in rows if s2 == s and m2 == mode and r2 == 1), None)
                med = statistics.median(speeds)
                print(f"| {mode} | {ranks} ({max(ranks - 1, 1)}) | {med:.0f} ({min(speeds):.0f}-{max(speeds):.0f}) | "
                      f"{med / limits[mode]:.2f} | {med / refs[mode]:.2f} | "
                      f"{_paired(speeds, paired_alone.get(ranks)) if mode == 'live' else '-'} | "
                      f"{med / one if one else float('nan'):.2f} | "
                      f"{cr:.2f} | "
                      f"{rss:.0f} | {close:.2f} |")


def _paired(speeds: list[float], alone: list[float] | None) -> str:
    """Median of nxpar / the same publisher alone, each live run against the one measured just before it."""
    if not alone:
        return "-"
    ratios = [a / b for a, b in zip(speeds, alone)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}; alone {statistics.median(alone):.0f})"


if __name__ == "__main__":
    main()
