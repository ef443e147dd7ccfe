"""The parts of the benchmarks that run under mpirun; each prints one JSON line (rank 0).

    mpirun -n 1 python -m perf.probes stage-write PATH H W DTYPE SCHEME FRAMES   filter and HDF5-write CPU
    mpirun -n 2 python -m perf.probes stage-agree STEPS                          nxpar's agreements per step
    mpirun -n 2 python -m perf.probes mpi-wait SECONDS WAITS HOW [SLICE_DIR ...]  a rank waiting for another

`run(ranks, args, env)` starts one from the benchmarks and returns the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30


def run(ranks: int, args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> dict:
    return run_module(ranks, "perf.probes", args, env, timeout)


def run_module(ranks: int, module: str, args: list[str], env: dict[str, str] | None = None,
               timeout: float = 600) -> dict:
    """`mpirun -n RANKS python -m MODULE ARGS`: the JSON of its last line."""
    out = subprocess.run(["mpirun", "-n", str(ranks), sys.executable, "-m", module, *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"{module} {args[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def stage_write(path: str, shape: tuple[int, int], dtype: str, scheme: str, n: int) -> dict[str, float]:
    """One rank: filter CPU (into an in-memory file) and HDF5 write CPU (mpio, collective, to disk, − filter)."""
    import h5py
    from mpi4py import MPI

    from launch.simulate import realistic_frames
    from nxpar.writers.file_access import FileAccessSettings, make_fapl
    from nxpar.writers.filters import filter_kwargs

    frames = realistic_frames(16, shape, dtype)

    def write(f: h5py.File, collective: bool) -> float:
        d = f.create_dataset("data", shape=(n,) + shape, dtype=dtype, chunks=(1,) + shape, **filter_kwargs(scheme))
        t0 = time.process_time()
        for i in range(n):
            if collective:
                with d.collective:
                    d[i] = frames[i % len(frames)]
            else:
                d[i] = frames[i % len(frames)]
        return time.process_time() - t0

    with h5py.File("warm-up.h5", "w", driver="core", backing_store=False) as f:
        write(f, False)  # loads the filter plugin, warms the caches
    with h5py.File("filtered.h5", "w", driver="core", backing_store=False) as f:
        filt = write(f, False)
    fid = h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fapl=make_fapl(MPI.COMM_WORLD, FileAccessSettings()))
    with h5py.File(fid) as f:
        mpio = write(f, True)
    os.unlink(path)
    gib = n * frames[0].nbytes / GIB
    return {"filter": filt / gib, "hdf5_write": max(mpio - filt, 0.0) / gib}


def stage_agree(steps: int) -> dict[str, float]:
    """All ranks: CPU s per step of the agreements a writer rank makes (one in the step, one after it)."""
    from mpi4py import MPI

    from nxpar.protocol.mpi_roles import sleepy_allreduce_max

    comm = MPI.COMM_WORLD
    comm.Barrier()
    t0 = time.process_time()
    for _ in range(steps):
        sleepy_allreduce_max(comm, 0)
        sleepy_allreduce_max(comm, 0)
    return {"per_step": max(comm.allgather((time.process_time() - t0) / steps))}


def mpi_wait(seconds: float, waits: int, how: str, slice_dirs: list[str]) -> dict[str, float]:
    """Rank 1 sleeps `seconds` (no CPU), then joins; rank 0 waits for it `how` ('barrier': MPI_Barrier,
    busy-polling as HDF5's collectives do; 'sleepy': nxpar's sleep-polled agreement). Rank 0 first
    moves itself into the given cgroup directories. CPU rank 0 burns, and how late it wakes."""
    from mpi4py import MPI

    from nxpar.protocol.mpi_roles import sleepy_allreduce_max

    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        for d in slice_dirs:
            Path(d, "cgroup.procs").write_text(str(os.getpid()))
    wait = comm.Barrier if how == "barrier" else (lambda: sleepy_allreduce_max(comm, 0))
    cpu, late = 0.0, []
    for _ in range(waits):
        comm.Barrier()
        if comm.rank == 1:
            time.sleep(seconds)
            t_enter = time.perf_counter()
            wait()
            comm.send(t_enter, dest=0)
        else:
            c0 = time.process_time()
            wait()
            t_exit = time.perf_counter()
            cpu += time.process_time() - c0
            late.append(t_exit - comm.recv(source=1))
    if comm.rank != 0:
        return {}
    late.sort()
    return {"wait_s": seconds * waits, "cpu_s": cpu, "latency_ms": late[len(late) // 2] * 1e3}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    w = sub.add_parser("stage-write")
    for name in ("path", "height", "width", "dtype", "scheme", "frames"):
        w.add_argument(name)
    sub.add_parser("stage-agree").add_argument("steps", type=int)
    m = sub.add_parser("mpi-wait")
    m.add_argument("seconds", type=float)
    m.add_argument("waits", type=int)
    m.add_argument("how", choices=["barrier", "sleepy"])
    m.add_argument("slice_dirs", nargs="*")
    args = p.parse_args(argv)
    if args.what == "stage-write":
        result = stage_write(args.path, (int(args.height), int(args.width)), args.dtype, args.scheme, int(args.frames))
    elif args.what == "stage-agree":
        result = stage_agree(args.steps)
    else:
        result = mpi_wait(args.seconds, args.waits, args.how, args.slice_dirs)
    from mpi4py import MPI

    if MPI.COMM_WORLD.rank == 0:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
