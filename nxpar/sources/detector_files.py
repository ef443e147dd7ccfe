"""Files of the blissdata plugin detectors: Lima2 master files and Mosca's spectra files.

Rank 0 uses the naming and the "what is complete on disk" checks to decide which rows can be
copied; the writer ranks read their share of those rows (`read_runs`), never through the Lima2
conductor or the Mosca server. Layouts (from lima2-client 4.3 and mosca 2.0.5, which write them):

* Lima2: `<scan dir>/<det>_frame_master.h5`, written by the conductor when the acquisition ends,
  its dataset `<entry>/<instrument>/<det>/data` a virtual dataset (relative paths) over the
  receivers' files `<det>_frame_<rcv>_<NNNNN>.h5`, each (n, 1, H, W) bitshuffle-LZ4; the master's
  shape is (n,) + the stream's shape ((H, W), (C, H, W) or (W,) for vectors). The receivers'
  files themselves, before the master exists: `nxpar.sources.lima2_receivers`.
* Mosca: `<file_path>/<file_prefix>spectra_<NNNN>.h5`, datasets `<data_path>/spectra_<det:02d>`
  (n, nchannels), `points_per_file` points each; a file is closed before the next one is opened.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# (absolute file path, dataset path, first index in the dataset, number of rows)
Run = tuple[str, str, int, int]

WAIT_S = 10.0  # files that should be complete are waited for this long (written by another host)


@dataclass(frozen=True)
class MoscaSaving:
    """Where Mosca saves one detector element's spectra (from the stream's `mosca_info`)."""

    directory: str
    prefix: str
    data_path: str
    points_per_file: int
    detector: int

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> "MoscaSaving | None":
        """None when Mosca does not save (no file path, saving disabled, no points per file)."""
        m = info.get("mosca_info") or {}
        if not m.get("file_path") or not m.get("saving_enabled") or not m.get("points_per_file"):
            return None
        if str(m.get("file_format") or "hdf5").lower() not in ("hdf5", "h5"):
            return None
        return cls(str(m["file_path"]), str(m.get("file_prefix") or ""), str(m.get("data_path") or ""),
                   int(m["points_per_file"]), int(info["detector"]))

    def file(self, number: int) -> str:
        return os.path.join(self.directory, f"{self.prefix}spectra_{number:04d}.h5")

    @property
    def dataset(self) -> str:
        return f"{self.data_path}/spectra_{self.detector:02d}"

    def runs(self, start: int, stop: int) -> list[Run]:
        """Rows [start, stop) as (file, dataset, index, count) runs, one per file."""
        out: list[Run] = []
        ppf = self.points_per_file
        p = start
        while p < stop:
            number, index = divmod(p, ppf)
            count = min(ppf - index, stop - p)
            out.append((self.file(number), self.dataset, index, count))
            p += count
        return out

    def closed_points(self, limit: int) -> int:
        """Points in files Mosca has closed (the next file exists), at most `limit`."""
        ppf = self.points_per_file
        n = 0
        while n + ppf <= limit and os.path.exists(self.file(n // ppf + 1)):
            n += ppf
        return n

    def saved_points(self, expected: int, wait_s: float = WAIT_S) -> int:
        """After the stream is sealed: points of [0, expected) that are in the files, waiting up to
        `wait_s` for the last file to hold them all (it may still be being closed)."""
        deadline = time.monotonic() + wait_s
        while True:
            n = self.closed_points(expected)
            if n < expected:
                n += rows_in(self.file(n // self.points_per_file), self.dataset)
            n = min(n, expected)
            if n >= expected or time.monotonic() > deadline:
                return n
            time.sleep(0.2)


def rows_in(path: str, dataset: str) -> int:
    """Rows of a dataset in a file that may be missing or still being written (0 then)."""
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f[dataset].shape[0])
    except (OSError, KeyError):
        return 0


def lima2_master_ready(master: tuple[str, str], frames: int) -> bool:
    """The master file exists and its dataset holds `frames` frames (the conductor writes it once
    the acquisition ended)."""
    path, dataset = master
    return os.path.exists(path) and rows_in(path, dataset) >= frames


def read_runs(runs: Sequence[Run], first_row: int, lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of a source whose runs start at row `first_row`: one slice read per file
    (files opened without HDF5 file locking: the detector software may still hold them)."""
    import h5py
    import hdf5plugin  # noqa: F401  (bitshuffle-LZ4 of Lima2 and Mosca)

    parts: list[np.ndarray] = []
    row = first_row
    for path, dataset, index, count in runs:
        a, b = max(lo, row), min(hi, row + count)
        if b > a:
            with h5py.File(path, "r", locking=False) as f:
                d = f[dataset]
                first = index + a - row
                if d.shape[0] < first + b - a:
                    raise RuntimeError(f"{path}::{dataset} holds {d.shape[0]} rows, "
                                       f"rows {first}..{first + b - a - 1} were expected")
                parts.append(d[first:first + b - a])
        row += count
        if row >= hi:
            break
    if not parts:
        return np.empty((0,))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
