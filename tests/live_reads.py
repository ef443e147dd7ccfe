"""Reads of a file another process is writing, each in a child process of its own.

HDF5 gives no guarantee to a reader of a file that a writer changes under it (no SWMR): a read
can see half-written metadata and crash the reader with a segmentation fault, not only raise.
Tests that look into a file during a scan therefore read it here, in a fresh `python`, so that
such a crash is a failed read (None), never a crashed pytest. Run as
`python -m tests.live_reads READER FILE PATH [N]`: prints the pickled result to stdout (hex).
"""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READ_TIMEOUT_S = 20.0


def shape_and_virtual(filename: str, path: str):
    """(shape, is virtual) of a dataset, None if absent."""
    import h5py
    import hdf5plugin  # noqa: F401
    with h5py.File(filename, "r", locking=False) as f:
        d = f.get(path)
        return None if d is None else (d.shape, d.is_virtual)


def first_rows(filename: str, path: str, n: str):
    """(first n rows, is virtual, VDS source files) of a dataset; None until it has n rows."""
    import h5py
    import hdf5plugin  # noqa: F401
    with h5py.File(filename, "r", locking=False) as f:
        d = f.get(path)
        if d is None or d.shape[0] < int(n):
            return None
        sources = {v.file_name for v in d.virtual_sources()} if d.is_virtual else set()
        return d[:int(n)], d.is_virtual, sources


def row_count(filename: str, path: str):
    """Rows of a dataset (an error if absent)."""
    import h5py
    import hdf5plugin  # noqa: F401
    with h5py.File(filename, "r", locking=False) as f:
        return int(f[path].shape[0])


READERS = {f.__name__: f for f in (shape_and_virtual, first_rows, row_count)}


def read_live(reader, filename: str, path: str, *args):
    """`reader(filename, path, *args)` run in a child process; None if it failed in any way
    (an exception, a crash, a hang past READ_TIMEOUT_S)."""
    cmd = [sys.executable, "-m", "tests.live_reads", reader.__name__, filename, path, *map(str, args)]
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=READ_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    return pickle.loads(bytes.fromhex(done.stdout.decode().strip()))


def main(argv: list[str]) -> int:
    reader, *args = argv
    try:
        result = READERS[reader](*args)
    except (OSError, KeyError, RuntimeError, ValueError):
        return 1
    print(pickle.dumps(result).hex())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
