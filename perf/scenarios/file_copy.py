"""file_copy: nxpar's writer ranks copying Lima frames from the detector's HDF5 files into the scan file
(Lima `copy_non_external`), by writer-rank count, against one process copying the same files.

    python -m perf file_copy                      # 1, 2, 4 writer ranks; lz4-bitshuffle and gzip-byteshuffle
    python -m perf file_copy --writers 1 4 --frames 192 64 --repeat 1 --slices publisher=0.4,redis=0.3,rank0=0.2,writer=0.2

The frames are written once, before any scan, as Lima saves them (perf/core/lima_source.py: plain
HDF5, --per-file frames per file; still in the page cache, as just after Lima closed them). Each scan
is published as BLISS publishes a Lima detector: its scalars and one Lima stream whose status says
every frame is saved, all of it in Redis before PREPARED, so that the writer drains: timed from
PREPARED to the file closed. One service per writer count (N writer ranks: N + 1 ranks) with
`disable_external_hdf5` + `copy_non_external` serves every scheme; --frames sizes each scheme's scan
(the first frames of the same files). Baseline, same run, same files: one process reading them with
h5py and writing them with nxpar's chunks and filter (in slices: the baseline slice, one writer
rank's share). CPU and peak RSS of Redis, rank 0 and each writer rank per scan (in slices, their
throttling); the first scan of each writer count and scheme is read back and compared frame by frame
with Lima's files, every other one checked for its frame count.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..core.baselines import in_child
from ..core.lima_source import (COPY_PROPERTIES, LimaFiles, check_copy, copy_in_one_process, lima_publisher,
                                preload, write_lima_files)
from ..core.meter import Meter, Use
from ..core.publisher import MB
from ..core.results import Document
from ..core.scan import wait_registered
from ..core.slices import SliceSet
from ..core.stack import BenchStack, Service, bench_stack

SLICES = True
SCHEMES = ["lz4-bitshuffle", "gzip-byteshuffle"]
WARM_UP_SCHEME = "lz4-bitshuffle"


def add_arguments(p) -> None:
    p.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4], help="writer ranks (N + 1 ranks each)")
    p.add_argument("--compression", nargs="+", default=SCHEMES)
    p.add_argument("--frames", type=int, nargs="+", default=[256, 96],
                   help="frames per scan, one per --compression scheme (or one for all); multiples of 8 frames "
                        "(a chunk row of 1024² uint16) × the most writer ranks keep every rank busy to the end")
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--per-file", type=int, default=100, help="frames per Lima file")
    p.add_argument("--repeat", type=int, default=2, help="scans per configuration (median, min-max)")


@dataclass
class CopyRun:
    writers: int
    ranks: int
    scheme: str
    frames: int
    frame_shape: list[int]
    dtype: str
    nbytes: int
    seconds: float  # PREPARED (every frame reported saved) → file closed
    mb_per_s: float
    compression_ratio: float
    chunks: list[int]
    compared: bool  # every frame compared with Lima's files
    state: str
    reason: str
    use: dict[str, Use] = field(default_factory=dict)


def scan_sizes(args) -> dict[str, int]:
    """{scheme: frames per scan}."""
    if len(args.frames) not in (1, len(args.compression)):
        raise SystemExit(f"--frames: one count, or one per scheme ({len(args.compression)})")
    counts = args.frames * len(args.compression) if len(args.frames) == 1 else args.frames
    return dict(zip(args.compression, counts))


def wait_done(proxy, name: str, timeout: float = 1800) -> float:
    """perf_counter when the device no longer reports the scan running (polled every 5 ms)."""
    deadline = time.monotonic() + timeout
    while str(proxy.scan_state(name)) in ("INIT", "ON"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"scan {name} still running after {timeout} s")
        time.sleep(0.005)
    return time.perf_counter()


def copy_scan(stack: BenchStack, service: Service, files: LimaFiles, pool: np.ndarray, scheme: str, frames: int,
              scan_nb: int, meter: Meter | None, compare: bool) -> CopyRun:
    """One Lima scan through the service, drained: preloaded, then PREPARED … closed; the file checked."""
    filename = str(stack.rundir / f"copy_{scan_nb}.h5")
    pub = lima_publisher(stack.url, files, service.instance, filename, scan_nb, frames, scheme)
    name = pub.spec.name
    wait_registered(service.proxy, name)
    preload(pub)
    if meter is not None:
        meter.start()
    t0 = time.perf_counter()
    pub.prepare_start()
    pub.stop_close()
    seconds = wait_done(service.proxy, name) - t0
    use = meter.stop() if meter is not None else {}
    state, reason = str(service.proxy.scan_state(name)), service.proxy.scan_state_reason(name)
    found = {"chunks": [], "compression_ratio": float("nan"), "problem": ""}
    if state == "OFF":
        found = check_copy(filename, scan_nb, pool, frames, compare)
        state, reason = ("FAULT", found["problem"]) if found["problem"] else (state, reason)
    if os.path.exists(filename):
        os.unlink(filename)
    stack.free_stream_data()
    nbytes = frames * pool[0].nbytes
    return CopyRun(service.writers, service.ranks, scheme, frames, list(files.shape), files.dtype, nbytes, seconds,
                   nbytes / MB / seconds, found["compression_ratio"], found["chunks"], compare and state == "OFF",
                   state, reason, use)


def baselines(stack: BenchStack, files: LimaFiles, sizes: dict[str, int], doc: Document,
              slices: SliceSet | None) -> None:
    """One process copying the same files, each scheme (in the baseline slice)."""
    for scheme, frames in sizes.items():
        r = in_child(slices, copy_in_one_process, files, frames, scheme, str(stack.rundir / "baseline.h5"))
        nbytes = frames * int(np.prod(files.shape)) * np.dtype(files.dtype).itemsize
        doc.add("baseline", name="single-process h5py copy", scheme=scheme, frames=frames, nbytes=nbytes,
                seconds=r["seconds"], mb_per_s=nbytes / MB / r["seconds"], cpu_s=r["cpu_s"], chunks=r["chunks"])
        print(f"  single process {scheme}: {nbytes / MB / r['seconds']:.1f} MB/s", flush=True)


def copies(stack: BenchStack, files: LimaFiles, pool: np.ndarray, sizes: dict[str, int], writers: int, args,
           doc: Document, scan_nb: int) -> int:
    """Every scheme's scans through one service of `writers` writer ranks (after one unmeasured scan)."""
    service = stack.start_service(f"copy{writers}", writers + 1, properties=COPY_PROPERTIES)
    meter = Meter({"redis": stack.redis, **service.watched})
    try:
        scan_nb += 1  # a fresh service's first file, a fresh Redis's first allocations: not measured
        copy_scan(stack, service, files, pool, WARM_UP_SCHEME, min(8 * writers, files.frames), scan_nb, None, False)
        for scheme, frames in sizes.items():
            for repeat in range(args.repeat):
                scan_nb += 1
                run = copy_scan(stack, service, files, pool, scheme, frames, scan_nb, meter, repeat == 0)
                doc.add("scan", **vars(run))
                print(f"  {writers} writer ranks {scheme}: {run.state} {run.mb_per_s:.1f} MB/s"
                      f"{' (frames compared)' if run.compared else ''}", flush=True)
                if run.state != "OFF":
                    raise RuntimeError(f"scan {scan_nb} ended {run.state}: {run.reason}")
    finally:
        stack.stop_service(service)
    return scan_nb


def run(args, doc: Document, slices: SliceSet | None) -> None:
    sizes = scan_sizes(args)
    doc.params.update(frames_per_scheme=sizes)
    with bench_stack("file_copy", slices, keep=args.keep) as stack:
        pool = np.load(stack.frame_pool(tuple(args.shape), args.dtype))
        files = write_lima_files(stack.rundir / "lima", pool, max(sizes.values()), args.per_file)
        for _ in range(args.repeat):
            baselines(stack, files, sizes, doc, slices)
        scan_nb = 0
        for writers in args.writers:
            scan_nb = copies(stack, files, pool, sizes, writers, args, doc, scan_nb)
