"""Lima streams mapped in an h5map (BLISS's "mapping" route), as blisswriter 3.0.0 writes them.

BLISS maps a Lima channel as a stream dataset like any other; the frames stay in Lima's files. At
the end of the scan the dataset becomes a virtual dataset over Lima's HDF5 files (source paths
relative to the scan file's directory when inside it, else absolute), or an HDF5 external dataset
over the raw data of EDF files. Not saved by Lima: nothing is written there. Pure logic.
"""
from __future__ import annotations

import os
from typing import Any

from ..protocol.steps import Node, NodeOp
from .chunking import fill_value
from .lima_plan import LimaMode


def lima_mode(lima_info: dict[str, Any]) -> LimaMode:
    """VDS (HDF5 files), EXTERNAL (EDF files) or NONE (Lima did not save, or another format)."""
    if not lima_info.get("file_path") or not lima_info.get("frame_per_file"):
        return LimaMode.NONE
    fmt = str(lima_info.get("file_format") or "").lower()
    if fmt.startswith("hdf5"):
        return LimaMode.VDS
    if fmt == "edf":
        return LimaMode.EXTERNAL
    return LimaMode.NONE


def relative_to(path: str, directory: str) -> str:
    rel = os.path.relpath(path, directory)
    return path if rel.startswith("..") else rel


def lima_nodes(path: str, attrs: dict[str, Any], scan_dir: str, refs: list[Any], dtype: str,
               frame_shape: tuple[int, ...], lima_info: dict[str, Any],
               edf_blocks: list[tuple[str, int, int]] | None = None) -> list[Node]:
    """The frames at the map's `path`: one VDS source per run of consecutive frames of one file."""
    mode = lima_mode(lima_info)
    if not refs or mode == LimaMode.NONE:
        return []
    shape = (len(refs),) + tuple(frame_shape)
    if mode == LimaMode.EXTERNAL:
        return [Node(NodeOp.EXTERNAL, path, {"shape": shape, "dtype": dtype, "files": list(edf_blocks or [])},
                     attrs=dict(attrs))]
    sources: list[list[Any]] = []
    for target, ref in enumerate(refs):
        file_path = relative_to(ref.file_path, scan_dir)
        last = sources[-1] if sources else None
        if (last and last[0] == file_path and last[1] == ref.data_path
                and last[3] + last[5] == ref.index and last[4] + last[5] == target):
            last[5] += 1
        else:
            sources.append([file_path, ref.data_path, (int(lima_info["frame_per_file"]),) + tuple(frame_shape),
                            ref.index, target, 1])
    spec = {"shape": shape, "dtype": dtype, "fillvalue": fill_value(dtype), "sources": [tuple(s) for s in sources]}
    return [Node(NodeOp.VDS, path, spec, attrs=dict(attrs))]
