"""Publish a realistic BLISS-like scan through blissdata and measure how fast nxpar writes it.

    python -m perf.replay_scan --ranks 4 --frames 200 --shape 1024 1024 --dtype uint16

Starts its own embedded stack (or uses a running one with --rundir of `launch.stack up`),
generates frames before the scan, publishes flat out (or at --rate Hz), waits until the device
reports the scan OFF/FAULT and reports frames/s, MB/s (uncompressed), compression ratio, time
from scan end to file closed, and peak RSS per rank.
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ReplayResult:
    ranks: int
    frames: int
    shape: tuple[int, int]
    dtype: str
    compression: str
    publish_s: float
    total_s: float
    close_after_end_s: float
    frames_per_s: float
    mb_per_s: float
    compression_ratio: float
    peak_rss_mb: dict[str, float]
    state: str
    reason: str
    filename: str


class RssSampler(threading.Thread):
    """Peak RSS of every NexusWriterService rank, sampled every 0.2 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak: dict[str, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            for p in psutil.process_iter(["cmdline", "environ"]):
                try:
                    cmd = p.info["cmdline"] or []
                    if any("NexusWriterService" in c for c in cmd) and "mpirun" not in cmd[0]:
                        rank = (p.info["environ"] or {}).get("PMI_RANK", str(p.pid))
                        rss = p.memory_info().rss / 1024**2
                        self.peak[f"rank{rank}"] = max(self.peak.get(f"rank{rank}", 0.0), rss)
                except Exception:
                    pass
            self._halt.wait(0.2)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join()
        return dict(sorted(self.peak.items()))


def publish_alone(redis_url: str, filename: str, scan_nb: int, frames: int, shape: tuple[int, int], dtype: str,
                  compression: str | None, frame_pool: np.ndarray) -> float:
    """MB/s of the very publisher `replay` uses, same scan, in a session no writer serves: the pace
    BLISS sets when nothing reads (clock as in `replay`: before publishing → publisher done)."""
    from launch.simulate import ScanPublisher, ScanSpec

    chunk_options = {"compression_scheme": compression} if compression else {}
    spec = ScanSpec("nobody_writes", filename, scan_nb, frames, image_shape=shape, image_dtype=dtype,
                    mca_channels=None, chunk_options=chunk_options)
    pub = ScanPublisher(redis_url, spec, frame_pool)
    t0 = time.perf_counter()
    pub.run()
    return frames * int(np.prod(shape)) * np.dtype(dtype).itemsize / 1024**2 / (time.perf_counter() - t0)


def replay(proxy, redis_url: str, session: str, filename: str, scan_nb: int, frames: int,
           shape: tuple[int, int], dtype: str, compression: str | None, ranks: int,
           rate_hz: float | None = None, batch: int = 1, frame_pool: np.ndarray | None = None,
           unknown_length: bool = False, preload: bool = False) -> ReplayResult:
    """One scan through a running device; returns the measured figures."""
    import h5py
    import hdf5plugin  # noqa: F401  (readers need the filters)

    from launch.simulate import ScanPublisher, ScanSpec, realistic_frames

    chunk_options = {"compression_scheme": compression} if compression else {}
    spec = ScanSpec(session, filename, scan_nb, frames, image_shape=shape, image_dtype=dtype,
                    mca_channels=None, chunk_options=chunk_options, publish_npoints=not unknown_length)
    pool = frame_pool if frame_pool is not None else realistic_frames(min(frames, 16), shape, dtype)
    sampler = RssSampler()
    sampler.start()
    pub = ScanPublisher(redis_url, spec, pool)
    deadline = time.monotonic() + 10
    while not proxy.scan_exists(spec.name):
        if time.monotonic() > deadline:
            raise RuntimeError("the writer did not register the scan within 10 s")
        time.sleep(0.02)
    t0 = time.perf_counter()
    publish_s = pub.run(batch=batch, rate_hz=rate_hz, preload=preload)
    t_end = time.perf_counter()
    if preload:  # the clock starts when the writer may start: at PREPARED, all data already in Redis
        t0 = t_end
    while str(proxy.scan_state(spec.name)) in ("INIT", "ON"):
        time.sleep(0.01)
    t_closed = time.perf_counter()
    state, reason = str(proxy.scan_state(spec.name)), proxy.scan_state_reason(spec.name)
    rss = sampler.stop()
    total = t_closed - t0
    raw_bytes = frames * int(np.prod(shape)) * np.dtype(dtype).itemsize
    ratio = float("nan")
    if state == "OFF":
        with h5py.File(filename, "r", locking=False) as f:
            dset = f[f"{scan_nb}.1/instrument/image/data"]
            stored = dset.id.get_storage_size()
            ratio = raw_bytes / stored if stored else float("nan")
            if dset.shape[0] != frames:
                state, reason = "FAULT", f"file has {dset.shape[0]} frames, {frames} published"
    return ReplayResult(ranks, frames, shape, dtype, compression or "default", publish_s, total,
                        t_closed - t_end, frames / total, raw_bytes / 1024**2 / total, ratio, rss,
                        state, reason, filename)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=3)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--compression", default=None, help="none, gzip, gzip-byteshuffle, lz4-bitshuffle, blosc-zstd")
    p.add_argument("--rate", type=float, default=None, help="frames per second (default: flat out)")
    p.add_argument("--batch", type=int, default=1, help="frames per Redis event")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--unknown-length", action="store_true")
    p.add_argument("--preload", action="store_true",
                   help="publish everything before PREPARED: measures the writer draining Redis alone")
    p.add_argument("--rundir", default=None, help="use a stack started by `launch.stack up`")
    p.add_argument("--json", default=None, help="append results as JSON lines to this file")
    args = p.parse_args(argv)

    from launch.stack import Stack

    own = args.rundir is None
    rundir = Path(args.rundir or ROOT / "run" / f"replay-{os.getpid()}")
    stack = Stack(rundir)
    try:
        if own:
            proxy = stack.start_writer_stack("replay", "replay", args.ranks)
        else:
            from nxpar.service.register import find_session_writer

            os.environ.update(stack.env)
            proxy = stack.wait_device(find_session_writer("replay"))
        from launch.simulate import realistic_frames

        pool = realistic_frames(min(args.frames, 16), tuple(args.shape), args.dtype)
        for i in range(args.repeat):
            r = replay(proxy, stack.env["REDIS_DATA_URL"], "replay", str(rundir / "data" / f"scan{i}.h5"), i + 1,
                       args.frames, tuple(args.shape), args.dtype, args.compression, args.ranks,
                       args.rate, args.batch, pool, args.unknown_length, args.preload)
            print(f"{r.state}: {r.frames} frames {r.shape} {r.dtype} {r.compression} ranks={r.ranks}: "
                  f"{r.frames_per_s:.1f} frames/s, {r.mb_per_s:.1f} MB/s, ratio {r.compression_ratio:.2f}, "
                  f"closed {r.close_after_end_s:.2f}s after scan end, peak RSS {r.peak_rss_mb}", flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(asdict(r)) + "\n")
    finally:
        if own:
            stack.down()


if __name__ == "__main__":
    main()
