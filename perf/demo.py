"""`make demo`: the embedded stack, a 4-rank service, one real 2D scan; prints the tree and throughput."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def print_tree(filename: str) -> None:
    import h5py
    import hdf5plugin  # noqa: F401

    with h5py.File(filename, "r", locking=False) as f:
        def show(name: str, depth: int, group) -> None:
            for key in group:
                link = group.get(key, getlink=True)
                pad = "  " * depth
                if isinstance(link, h5py.SoftLink):
                    print(f"{pad}{key} -> {link.path}")
                    continue
                obj = group[key]
                nxc = obj.attrs.get("NX_class", "")
                if isinstance(obj, h5py.Group):
                    print(f"{pad}{key}/ {nxc}")
                    show(key, depth + 1, obj)
                elif obj.shape == ():
                    value = obj[()]
                    value = value.decode() if isinstance(value, bytes) else getattr(value, "item", lambda: value)()
                    print(f"{pad}{key} = {value!r}")
                else:
                    filt = ",".join(str(k) for k in obj._filters) or "none"
                    print(f"{pad}{key} {obj.dtype} {obj.shape} chunks={obj.chunks} filters={filt}")
        print(f"{filename}  {dict((k, str(v)) for k, v in f.attrs.items() if k in ('NX_class', 'default', 'creator'))}")
        show("/", 1, f)


def show(proxy, filename: str, r, writers: int) -> None:
    print(f"\nscan 1_ascan: {proxy.scan_state('1_ascan')} ({proxy.scan_state_reason('1_ascan')})")
    print(f"url: {list(proxy.scan_url('1_ascan'))}\n")
    print_tree(filename)
    print(f"\n{r.frames} frames 1024x1024 uint16, bitshuffle-LZ4, {r.ranks} ranks ({writers} writers):")
    print(f"  {r.frames / r.seconds:.1f} frames/s, {r.mb_per_s:.1f} MB/s (uncompressed), compression ratio "
          f"{r.compression_ratio:.2f}, file closed {r.close_after_end_s:.2f} s after scan end")
    print(f"  peak RSS per rank (MB): {', '.join(f'{k}={u.peak_rss_mb:.0f}' for k, u in r.use.items())}")


def main() -> None:
    from launch.stack import Stack
    from perf.core.meter import Meter
    from perf.core.publisher import Mode, PublisherProcess, scan_spec
    from perf.core.scan import replay
    from perf.core.stack import BenchStack

    # several ranks, but no more writers than cores: oversubscribed MPI ranks cost throughput (perf/RESULTS.md)
    ranks = int(os.environ.get("DEMO_RANKS", min(4, max(3, (os.cpu_count() or 2) + 1))))
    frames = int(os.environ.get("DEMO_FRAMES", 200))
    rundir = ROOT / "run" / "demo"
    shutil.rmtree(rundir, ignore_errors=True)
    stack = Stack(rundir)
    publisher = None
    try:
        print(f"starting the embedded stack in {rundir} ...", flush=True)
        stack.start_redis()
        stack.start_tango_db()
        os.environ.update(stack.env)
        bench = BenchStack(stack, rundir, None)
        service = bench.start_service("demo", ranks)
        proxy = service.proxy
        print(f"device {proxy.dev_name()}: {proxy.state()} ({proxy.status()}), {ranks} MPI ranks", flush=True)
        publisher = PublisherProcess(bench.url, {((1024, 1024), "uint16"): bench.frame_pool((1024, 1024), "uint16")})
        filename = str(rundir / "data" / "demo" / "data.h5")
        spec = scan_spec("demo", filename, 1, frames, (1024, 1024), "uint16", None)
        r = replay(service, publisher, spec, Mode.LIVE, Meter(dict(service.watched)))
        show(proxy, filename, r, service.writers)
        if r.state != "OFF":
            sys.exit(f"demo scan ended {r.state}: {r.reason}")
    finally:
        if publisher is not None:
            publisher.close()
        stack.down()
        print("stack stopped")


if __name__ == "__main__":
    main()
