"""Lima2 receivers' files: where each frame of a channel is while the acquisition runs.

Lima2's conductor writes the master file (`<prefix>_master.h5`, a VDS) only when the acquisition
has ended (lima2-client 4.3.2, `lima2/conductor/processing/master_file.py`: `MasterFileGenerator
.write` awaits `build_layout`, which iterates the frame lookup table until it is complete, and
only then opens the master file). During the scan the frames are only in the receivers' files
`<prefix>_<rcv>_<NNNNN>.h5` (same directory, same dataset path as the master), each (n, C, H, W),
frames dealt round robin between receivers (`ordering[i % R]`, nxpar takes `ordering = 0..R-1`:
lima2's `RoundRobin`), `nb_frames_per_file` frames a file.

Neither the number of receivers nor the frames per file are in the stream info, so both are
learnt from the disk: R = the receivers whose first file exists; frames per file = the most rows
a file its receiver has closed (its next file exists) holds. A closed file counts as complete only
once it holds that many rows (the next file may be opened before the last rows are flushed): frames
are never reported from a file that is not complete. Once frames are copied by that placement
(`fix`), R and the frames per file never change again: a disk that contradicts them (a receiver's
first file appearing late, a file holding more rows) makes the placement `broken`. Rank 0 uses
`Lima2Receivers` to place frames (`pieces`) and to count the frames in complete files; the writer
ranks read pieces (`read_pieces`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..protocol.steps import Piece
from .detector_files import rows_in

MASTER_SUFFIX = "_master.h5"


@dataclass
class Lima2Receivers:
    """One Lima2 channel's receivers' files, as learnt from the disk (rank 0 keeps one per channel)."""

    directory: str
    prefix: str
    dataset: str
    frame_shape: tuple[int, ...]  # the stream's: (H, W), (C, H, W) or (W,)
    receivers: int = 0  # 0: no receiver file seen yet
    per_file: int = 0  # 0: no file closed yet (each receiver's frames are all in its first file)
    files: list[int] = field(default_factory=list)  # files seen per receiver (numbered from 0)
    complete: list[int] = field(default_factory=list)  # per receiver: leading files closed and holding per_file rows
    fixed: bool = False  # frames were copied by this placement: receivers and per_file never change again
    broken: str = ""  # why the disk contradicts the fixed placement ("" while it does not)

    @classmethod
    def from_master(cls, master: tuple[str, str], shape: Sequence[int]) -> "Lima2Receivers | None":
        """From the stream's `master_file` (None if it is not named as the conductor names it)."""
        path, dataset = master
        base = os.path.basename(path)
        if not base.endswith(MASTER_SUFFIX) or len(base) == len(MASTER_SUFFIX):
            return None
        return cls(os.path.dirname(path), base[:-len(MASTER_SUFFIX)], dataset, tuple(int(n) for n in shape))

    def file(self, rcv: int, number: int) -> str:
        return os.path.join(self.directory, f"{self.prefix}_{rcv}_{number:05d}.h5")

    @property
    def file_frame_shape(self) -> tuple[int, ...]:
        """A frame as the receivers store it: (C, H, W)."""
        return (1,) * (3 - len(self.frame_shape)) + self.frame_shape

    def fix(self) -> None:
        """Frames are about to be copied by this placement: keep R and the frames per file as they are."""
        self.fixed = True

    def look(self) -> bool:
        """Learn receivers, files, frames per file and complete files from the disk; True if
        anything changed."""
        before = (self.receivers, self.per_file, list(self.files), list(self.complete), self.broken)
        while os.path.exists(self.file(self.receivers, 0)):
            if self.fixed:
                self._break(f"receiver {self.receivers}'s first file appeared after frames were copied "
                            f"assuming {self.receivers} receivers")
                break
            self.receivers += 1
            self.files.append(1)
            self.complete.append(0)
        for rcv in range(self.receivers):
            while os.path.exists(self.file(rcv, self.files[rcv])):
                self.files[rcv] += 1
        while not self._check_closed_files():  # per_file learnt again: every closed file checked again
            self.complete = [0] * self.receivers
        return before != (self.receivers, self.per_file, self.files, self.complete, self.broken)

    def _check_closed_files(self) -> bool:
        """Count the closed files that hold per_file rows (False: per_file was learnt again)."""
        for rcv in range(self.receivers):
            while self.complete[rcv] < self.files[rcv] - 1:  # a closed file not known complete yet
                rows = rows_in(self.file(rcv, self.complete[rcv]), self.dataset)
                if rows > self.per_file and not self.fixed:
                    self.per_file = rows
                    return False
                if self.fixed and (rows > self.per_file or not self.per_file):  # the placement copied by is wrong
                    assumed = f"{self.per_file} per file" if self.per_file else "each receiver's in its first file"
                    self._break(f"{os.path.basename(self.file(rcv, self.complete[rcv]))} holds {rows} frames, "
                                f"frames were copied assuming {assumed}")
                    return True
                if rows < self.per_file or not self.per_file:  # its last rows not there yet: not available
                    break
                self.complete[rcv] += 1
        return True

    def _break(self, why: str) -> None:
        self.broken = self.broken or why

    def closed_frames(self) -> int:
        """Frames 0..n-1 that are all in complete files (closed by their receivers, per_file rows)."""
        if not self.receivers or not self.per_file:
            return 0
        r = self.receivers
        return min(rcv + r * self.complete[rcv] * self.per_file for rcv in range(r))

    def frames_in_files(self, frames: int) -> bool:
        """After the acquisition: the receivers' files hold all of frames 0..frames-1 where this
        placement puts them (never with a broken placement)."""
        if self.broken:
            return False
        if not self.receivers:
            return frames == 0
        for rcv in range(self.receivers):
            local = _local_count(frames, rcv, self.receivers)
            if local and self._rows_on_disk(rcv) < local:
                return False
        return True

    def _rows_on_disk(self, rcv: int) -> int:
        """A receiver's frames on disk without a gap: its complete files, then the rows of the next."""
        done = self.complete[rcv]
        if done >= self.files[rcv]:
            return done * self.per_file
        rows = rows_in(self.file(rcv, done), self.dataset)
        return done * self.per_file + (min(rows, self.per_file) if self.per_file else rows)

    def pieces(self, start: int, stop: int) -> list[Piece]:
        """Frames [start, stop) as pieces of consecutive rows of one receiver's file (every R-th frame)."""
        out: list[Piece] = []
        r, per_file = self.receivers, self.per_file
        for rcv in range(r):
            j, end = _local_count(start, rcv, r), _local_count(stop, rcv, r)
            while j < end:
                number, index = divmod(j, per_file) if per_file else (0, j)
                count = min(per_file - index, end - j) if per_file else end - j
                out.append(Piece(self.file(rcv, number), self.dataset, index, count, rcv + r * j, r))
                j += count
        return out

    def master_agrees(self, master_path: str) -> bool | None:
        """Does the master file's VDS put each receiver file's frames where this placement (the
        receivers and frames per file fixed at the first copy) put them? None: cannot tell yet
        (the master file or its dataset cannot be read)."""
        import h5py

        try:
            with h5py.File(master_path, "r", locking=False) as f:
                plist = f[self.dataset].id.get_create_plist()
                if plist.get_layout() != h5py.h5d.VIRTUAL:
                    return False
                mapped = [(plist.get_virtual_filename(i), _selected_rows(plist.get_virtual_vspace(i)))
                          for i in range(plist.get_virtual_count())]
        except (OSError, KeyError):
            return None
        except ValueError:
            return False
        for name, frames in mapped:
            rcv, number = _receiver_file(os.path.basename(name), self.prefix)
            if rcv is None or rcv >= self.receivers or not frames or number and not self.per_file:
                return False
            local = number * self.per_file
            if frames != [rcv + self.receivers * (local + k) for k in range(len(frames))]:
                return False
        return bool(mapped)


def _selected_rows(space) -> list[int]:
    """The first-dimension indices of a hyperslab selection (the master's frames from one file)."""
    blocks = space.get_select_hyper_blocklist()
    return [i for start, end in blocks[:, :, 0].tolist() for i in range(start, end + 1)]


def _receiver_file(name: str, prefix: str) -> tuple[int | None, int]:
    """(receiver, file number) of `<prefix>_<rcv>_<NNNNN>.h5`, (None, 0) for another name."""
    rest = name[len(prefix) + 1:-3] if name.startswith(prefix + "_") and name.endswith(".h5") else ""
    rcv, _, number = rest.partition("_")
    return (int(rcv), int(number)) if rcv.isdigit() and number.isdigit() else (None, 0)


def _local_count(frames: int, rcv: int, receivers: int) -> int:
    """How many of frames 0..frames-1 receiver `rcv` got (round robin)."""
    return max(0, -(-(frames - rcv) // receivers))


def read_pieces(pieces: Sequence[Piece], lo: int, hi: int, row_shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Rows [lo, hi) from pieces, as (hi - lo,) + row_shape: one slice read per piece (files opened
    without HDF5 file locking: the receivers may still hold them)."""
    import h5py
    import hdf5plugin  # noqa: F401  (bitshuffle-LZ4 of Lima2's receivers)

    out = np.empty((hi - lo,) + tuple(row_shape), dtype=np.dtype(dtype))
    filled = 0
    for path, dataset, index, count, first, stride in pieces:
        k0, k1 = max(0, -(-(lo - first) // stride)), min(count, -(-(hi - first) // stride))
        if k1 <= k0:
            continue
        with h5py.File(path, "r", locking=False) as f:
            d = f[dataset]
            if d.shape[0] < index + k1:
                raise RuntimeError(f"{path}::{dataset} holds {d.shape[0]} rows, "
                                   f"rows {index + k0}..{index + k1 - 1} were expected")
            rows = d[index + k0:index + k1]
        a = first + k0 * stride - lo
        out[a:a + (k1 - k0 - 1) * stride + 1:stride] = rows.reshape((k1 - k0,) + tuple(row_shape))
        filled += k1 - k0
    if filled != hi - lo:
        raise RuntimeError(f"rows {lo}..{hi - 1}: {filled} of {hi - lo} found in the Lima2 receivers' files")
    return out
