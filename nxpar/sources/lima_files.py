"""Lima image files as nxpar needs them: where each EDF frame's raw data lies, and frames read back.

Used by rank 0 (EDF external datasets, at finalisation) and by the writer ranks (copying frames
into the scan file when external links are not allowed: `copy_non_external`). Frames are read
from the files Lima saved, never from the Lima server.
"""
from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

# (file format, absolute file path, dataset path in the file or "", frame index in the file)
FrameRef = tuple[str, str, str, int]

GROW_WAIT_S = 10.0  # EDF files may still be growing when the scan ends: wait this long for a frame


class FrameNotSaved(RuntimeError):
    pass


def edf_blocks(refs: Sequence[FrameRef], frame_nbytes: int, wait_s: float = GROW_WAIT_S
               ) -> list[tuple[str, int, int]]:
    """(file, offset, size) of the raw data of each frame, for an HDF5 external dataset.

    Raises when a frame is compressed or of another size than the stream says, or still missing
    after `wait_s` (a file that stopped growing).
    """
    blocks: list[tuple[str, int, int]] = []
    frames_of: dict[str, list] = {}
    deadline = time.monotonic() + wait_s
    for _, path, _, index in refs:
        while True:
            frames = frames_of.get(path)
            if frames is None or index >= len(frames):
                frames = frames_of[path] = _edf_frames(path)
            if index < len(frames) and not frames[index].incomplete_data:
                break
            if time.monotonic() > deadline:
                raise FrameNotSaved(f"EDF frame {index} of {path} is not there after {wait_s:.0f} s")
            time.sleep(0.2)
            frames_of.pop(path, None)
        frame = frames[index]
        if frame._data_compression not in (None, "", "NONE", "None"):
            raise ValueError(f"{path} frame {index} is compressed ({frame._data_compression}): "
                             "it cannot be an HDF5 external dataset")
        if frame.blobsize != frame_nbytes:
            raise ValueError(f"{path} frame {index} has {frame.blobsize} bytes, the stream says {frame_nbytes}")
        blocks.append((os.path.abspath(path), int(frame.start), int(frame.blobsize)))
    return blocks


def edf_byteorder(path: str) -> str:
    import fabio

    with fabio.open(path) as f:
        order = f.header.get("ByteOrder", "LowByteFirst")
    return ">" if order == "HighByteFirst" else "<"


def _edf_frames(path: str) -> list:
    import fabio

    try:
        with fabio.open(path) as f:
            return [f.get_frame(i) for i in range(f.nframes)]
    except (OSError, ValueError, IndexError):
        return []  # not there yet, or a header still being written


def read_frames(refs: Sequence[FrameRef]) -> np.ndarray:
    """The frames, in order (files opened once each, without HDF5 file locking: Lima may still write)."""
    import h5py

    images = []
    open_h5: dict[str, h5py.File] = {}
    try:
        for fmt, path, data_path, index in refs:
            fmt = fmt.lower()
            if fmt.startswith("hdf5"):
                f = open_h5.get(path)
                if f is None:
                    import hdf5plugin  # noqa: F401  (Lima's compressed HDF5 formats)

                    f = open_h5[path] = h5py.File(path, "r", locking=False)
                images.append(f[data_path][index])
            elif fmt.startswith("edf"):
                import fabio

                with fabio.open(path) as edf:
                    images.append(edf.get_frame(index).data)
            else:
                raise ValueError(f"cannot copy frames from {fmt} files ({path})")
    finally:
        for f in open_h5.values():
            f.close()
    return np.stack(images) if images else np.empty((0,))
