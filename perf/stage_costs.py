"""CPU seconds per GB of each stage of nxpar's write path, measured on this machine, and the projection
they give for more cores (perf/scaling.py prints both into perf/SCALING.md).

Stages, each measured alone on the same frames (CPU time of the process doing it, per GB of raw frames):
  redis read (client)   XRANGE of 8 frames per request, as a writer rank reads its share
  redis read (server)   the Redis server's CPU for those reads (single-threaded: a shared limit)
  redis publish (server) the Redis server's CPU while frames are published (live mode only)
  decode                raw entries → numpy rows (nxpar's direct decode into a buffer)
  filter                the compression filter: h5py into an in-memory file (core driver) with the filter
  HDF5 write            mpio driver, one rank, collective transfer, to the data directory, − filter
  collective agreement  per step and writer rank: the two agreements nxpar makes (sleepy_allreduce_max)
  rank-0 work per step  measured in the real service runs of scaling.py (psutil CPU of rank 0)

`python -m perf.stage_costs probe-write|probe-agree ...` are the parts that run under mpirun.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GB = 1024**3
ROWS_PER_WRITER = 8  # the device property's default: frames per writer rank per step


@dataclass
class StageCosts:
    """CPU s per GB of raw frames (agreement: CPU s per step and writer rank)."""

    scheme: str
    frame_nbytes: int
    redis_read_client: float
    redis_read_server: float
    redis_publish_server: float
    decode: float
    filter: float
    hdf5_write: float
    agreement_per_step: float
    rank0_per_step: float = float("nan")  # filled from the service runs
    service_writer_per_gb: float = float("nan")  # a writer rank's CPU per GB in the service (1 writer, drain)

    def agreement_per_gb(self, writers: int) -> float:
        """Per writer rank: each step moves ROWS_PER_WRITER frames through each writer."""
        return self.agreement_per_step * GB / (ROWS_PER_WRITER * self.frame_nbytes)

    def writer_per_gb(self, writers: int) -> float:
        return (self.redis_read_client + self.decode + self.filter + self.hdf5_write
                + self.agreement_per_gb(writers))

    def rank0_per_gb(self, writers: int) -> float:
        return self.rank0_per_step * GB / (ROWS_PER_WRITER * writers * self.frame_nbytes)


def _cpu() -> float:
    """This process's CPU seconds (all threads; clock_gettime resolution, not clock ticks)."""
    import time

    return time.process_time()


def proc_cpu(pid: int) -> float:
    """CPU seconds of every live thread of process `pid`, in nanoseconds resolution (schedstat);
    psutil's clock ticks (10 ms) would swamp short runs."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread ended meanwhile
    return total / 1e9


def redis_costs(url: str, redis_pid: int, frames: np.ndarray, n: int) -> dict[str, float]:
    """Publish n frames, read them back 8 at a time: client and server CPU per GB, decode per GB."""
    import redis as redis_lib
    from blissdata.redis_engine.store import DataStore
    from blissdata.streams.event_stream import StreamEntry

    from perf.bench_stack import frame_scan

    store = DataStore(url)
    scan, stream, _ = frame_scan(url, "stages", "stages", frames)
    scan.start()
    server0 = proc_cpu(redis_pid)
    for i in range(n):
        stream.send(frames[i % len(frames)][None])
    scan.stop()  # blissdata sends in the background: stop() returns once everything is in Redis
    publish_server = proc_cpu(redis_pid) - server0
    scan.close()
    key = store.load_scan(scan.key).streams["cam:image"].event_stream.key
    client = redis_lib.Redis.from_url(url)
    raw, client0, server0 = [], _cpu(), proc_cpu(redis_pid)
    for start in range(0, n, ROWS_PER_WRITER):
        raw.append(client.xrange(key, min=start, max=min(start + ROWS_PER_WRITER, n) - 1))
    read_client, read_server = _cpu() - client0, proc_cpu(redis_pid) - server0
    buf = np.empty((ROWS_PER_WRITER,) + frames.shape[1:], frames.dtype)
    t0 = _cpu()
    for items in raw:
        for j, e in enumerate(StreamEntry.from_raw(item) for item in items):
            if not e.is_seal:
                buf[j:j + e.length] = np.frombuffer(e.batch.payload, dtype=frames.dtype).reshape(
                    (e.length,) + frames.shape[1:])
    decode = _cpu() - t0
    client.delete(key)
    gb = n * frames[0].nbytes / GB
    return {"redis_read_client": read_client / gb, "redis_read_server": read_server / gb,
            "redis_publish_server": publish_server / gb, "decode": decode / gb}


# -- the parts that run under mpirun ------------------------------------------------------------------
def probe_write(path: str, shape: tuple[int, int], dtype: str, scheme: str, n: int) -> dict[str, float]:
    """One rank: filter CPU (into an in-memory file) and HDF5 write CPU (mpio, collective, to disk, − filter)."""
    import h5py
    from mpi4py import MPI

    from launch.simulate import realistic_frames
    from nxpar.writers.file_access import FileAccessSettings, make_fapl
    from nxpar.writers.filters import filter_kwargs

    frames = realistic_frames(16, shape, dtype)

    def write(f: h5py.File, kwargs: dict, collective: bool) -> float:
        d = f.create_dataset("data", shape=(n,) + shape, dtype=dtype, chunks=(1,) + shape, **kwargs)
        t0 = _cpu()
        for i in range(n):
            if collective:
                with d.collective:
                    d[i] = frames[i % len(frames)]
            else:
                d[i] = frames[i % len(frames)]
        return _cpu() - t0

    with h5py.File("warm-up.h5", "w", driver="core", backing_store=False) as f:
        write(f, filter_kwargs(scheme), False)  # loads the filter plugin, warms the caches
    with h5py.File("filtered.h5", "w", driver="core", backing_store=False) as f:
        filt = write(f, filter_kwargs(scheme), False)
    fapl = make_fapl(MPI.COMM_WORLD, FileAccessSettings())
    fid = h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fapl=fapl)
    with h5py.File(fid) as f:
        mpio = write(f, filter_kwargs(scheme), True)
    os.unlink(path)
    gb = n * frames[0].nbytes / GB
    return {"filter": filt / gb, "hdf5_write": max(mpio - filt, 0.0) / gb}


def probe_agree(steps: int) -> float:
    """All ranks: CPU s per step of the agreements a writer rank makes (one in the step, one after it)."""
    from mpi4py import MPI

    from nxpar.protocol.mpi_roles import sleepy_allreduce_max

    comm = MPI.COMM_WORLD
    comm.Barrier()
    t0 = _cpu()
    for _ in range(steps):
        sleepy_allreduce_max(comm, 0)
        sleepy_allreduce_max(comm, 0)
    per_step = (_cpu() - t0) / steps
    return max(comm.allgather(per_step))


def _mpirun(ranks: int, args: list[str]) -> dict:
    out = subprocess.run(["mpirun", "-n", str(ranks), sys.executable, "-m", "perf.stage_costs", *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(f"stage probe {args[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(url: str, redis_pid: int, frames: np.ndarray, n: int, scheme: str, workdir: Path,
            writers: int) -> StageCosts:
    shape, dtype = frames.shape[1:], str(frames.dtype)
    r = redis_costs(url, redis_pid, frames, n)
    w = _mpirun(1, ["probe-write", str(workdir / "stage.h5"), str(shape[0]), str(shape[1]), dtype, scheme, str(n)])
    agree = _mpirun(max(writers, 2), ["probe-agree", "300"])["per_step"]
    return StageCosts(scheme, frames[0].nbytes, agreement_per_step=agree, **r, **w)


# -- the projection --------------------------------------------------------------------------------------
def project(c: StageCosts, cores: int, live: bool) -> dict[str, float]:
    """MB/s that `cores` cores would give (cores − 1 writers + rank 0), from the measured costs.

    Two figures for the writers: from the stage costs (each stage alone: optimistic) and from a writer
    rank's CPU per GB in the real service (per-scan costs, waiting and polling included: pessimistic on
    short scans). Assumes Redis and BLISS on other machines (the Redis server is one core), a file system
    that is not the limit, and collective costs that stay per step as measured with few ranks."""
    writers = max(cores - 1, 1)
    limits = {"writers (stages)": writers / c.writer_per_gb(writers),
              "writers (service)": writers / c.service_writer_per_gb if c.service_writer_per_gb > 0 else math.inf,
              "redis server": 1 / (c.redis_read_server + (c.redis_publish_server if live else 0.0)),
              "rank 0": 1 / c.rank0_per_gb(writers) if c.rank0_per_step > 0 else math.inf}
    shared = min(limits["redis server"], limits["rank 0"])
    out = {k: v * 1024 for k, v in limits.items()}
    out["projected (stages)"] = min(limits["writers (stages)"], shared) * 1024
    out["projected (service)"] = min(limits["writers (service)"], shared) * 1024
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    w = sub.add_parser("probe-write")
    for name in ("path", "height", "width", "dtype", "scheme", "frames"):
        w.add_argument(name)
    a = sub.add_parser("probe-agree")
    a.add_argument("steps", type=int)
    args = p.parse_args(argv)
    if args.what == "probe-write":
        print(json.dumps(probe_write(args.path, (int(args.height), int(args.width)), args.dtype, args.scheme,
                                     int(args.frames))))
    else:
        per_step = probe_agree(args.steps)
        from mpi4py import MPI

        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps({"per_step": per_step}))


if __name__ == "__main__":
    main()

