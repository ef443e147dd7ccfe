"""One process writing frames from memory by each of nxpar's write paths (no Redis, no service):
run under `mpirun -n 1` by `python -m perf write_paths`; prints one JSON line {path: MB/s}.

    mpirun -n 1 python -m perf.write_probe DIR FRAMES SCHEME CHUNK_ROWS [--threads 1 2]

Paths: an in-memory file (HDF5's core driver: the filter and HDF5's chunk handling, no disk), the
serial driver through HDF5, the MPI-IO driver with collective transfers (and independent ones for
unfiltered frames: HDF5 1.10 refuses them with filters), and
whole chunks compressed outside HDF5 by nxpar's encoder (writers/direct/chunk_codec.py) on T threads
and stored with H5Dwrite_chunk (the one-writer path). Frames 1024² uint16, written 8 rows at a time
(one step of a writer rank); the clock includes closing the file.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SHAPE = (1024, 1024)
ROWS_PER_WRITE = 8


def _file(path: str, driver: str):
    import h5py
    from mpi4py import MPI

    from nxpar.writers.file_access import FileAccessSettings, make_fapl, make_serial_fapl

    if driver == "core":
        return h5py.File(path, "w", driver="core", backing_store=False)
    settings = FileAccessSettings()
    fapl = make_fapl(MPI.COMM_WORLD, settings) if driver == "mpio" else make_serial_fapl(settings)
    return h5py.File(h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fapl=fapl))


def _dataset(f, n: int, scheme: str, chunk_rows: int):
    from nxpar.writers.filters import filter_kwargs

    chunks = (chunk_rows, 256, 256) if chunk_rows > 1 else (1,) + SHAPE
    return f.create_dataset("data", shape=(n,) + SHAPE, dtype="uint16", chunks=chunks, **filter_kwargs(scheme))


def through_hdf5(path: str, frames: np.ndarray, n: int, scheme: str, chunk_rows: int, driver: str,
                 collective: bool = False) -> float:
    t0 = time.perf_counter()
    with _file(path, driver) as f:
        d = _dataset(f, n, scheme, chunk_rows)
        for i in range(0, n, ROWS_PER_WRITE):
            block = frames[i % len(frames):i % len(frames) + ROWS_PER_WRITE]
            if collective:
                with d.collective:
                    d[i:i + ROWS_PER_WRITE] = block
            else:
                d[i:i + ROWS_PER_WRITE] = block
    seconds = time.perf_counter() - t0
    if driver != "core":
        os.unlink(path)
    return seconds


def direct(path: str, frames: np.ndarray, n: int, scheme: str, chunk_rows: int, threads: int) -> float:
    """Whole chunks encoded on `threads` threads by the dataset's own filters, stored in order."""
    from nxpar.writers.direct.chunk_codec import encoder_for

    t0 = time.perf_counter()
    with _file(path, "sec2") as f, ThreadPoolExecutor(threads) as pool:
        d = _dataset(f, n, scheme, chunk_rows)
        encoder = encoder_for(d)
        if encoder is None:
            raise SystemExit(f"{scheme}: not encodable outside HDF5")
        c = encoder.chunk_shape
        for i in range(0, n, ROWS_PER_WRITE):
            rows = frames[i % len(frames):i % len(frames) + ROWS_PER_WRITE]
            origins = [(r, y, x) for r in range(0, ROWS_PER_WRITE, c[0]) for y in range(0, SHAPE[0], c[1])
                       for x in range(0, SHAPE[1], c[2])]
            loaded = [encoder.load(rows[r:r + c[0], y:y + c[1], x:x + c[2]]) for r, y, x in origins]
            for (r, y, x), data in zip(origins, pool.map(encoder.encode_loaded, loaded)):
                d.id.write_direct_chunk((i + r, y, x), data)
    seconds = time.perf_counter() - t0
    os.unlink(path)
    return seconds


def measure(workdir: Path, n: int, scheme: str, chunk_rows: int, threads: list[int]) -> dict[str, float]:
    from launch.simulate import realistic_frames

    frames = realistic_frames(16, SHAPE, "uint16")
    frames = np.concatenate([frames, frames[:ROWS_PER_WRITE]])  # every 8-row block of the cycle is contiguous
    mb = n * frames[0].nbytes / 2**20
    path = str(workdir / f"paths-{os.getpid()}.h5")
    through_hdf5(path, frames, ROWS_PER_WRITE * 2, scheme, chunk_rows, "core")  # loads the filter plugin
    out = {"in-memory file (core driver)": through_hdf5(path, frames, n, scheme, chunk_rows, "core"),
           "serial driver, through HDF5": through_hdf5(path, frames, n, scheme, chunk_rows, "sec2")}
    if scheme == "none":  # HDF5 1.10 writes filtered datasets through MPI-IO collectively only
        out["MPI-IO driver, independent"] = through_hdf5(path, frames, n, scheme, chunk_rows, "mpio")
    out["MPI-IO driver, collective"] = through_hdf5(path, frames, n, scheme, chunk_rows, "mpio", collective=True)
    if scheme != "none":
        out |= {f"direct chunks, {t} thread{'s' if t > 1 else ''}": direct(path, frames, n, scheme, chunk_rows, t)
                for t in threads}
    return {name: mb / seconds for name, seconds in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdir", type=Path)
    p.add_argument("frames", type=int)
    p.add_argument("scheme")
    p.add_argument("chunk_rows", type=int)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    print(json.dumps(measure(args.workdir, args.frames // ROWS_PER_WRITE * ROWS_PER_WRITE, args.scheme,
                             args.chunk_rows, args.threads)), flush=True)


if __name__ == "__main__":
    main()
