"""How Lima frames end up in the scan file (Lima's own files are never rewritten by nxpar).

Pure logic: which storage the device options allow for a Lima stream (`LimaMode`), and the nodes
that store the frames as a virtual dataset, an external dataset or text references.
"""
from __future__ import annotations

import enum
import os
from typing import Any

from ..protocol.options import SaveOptions
from ..protocol.steps import Node, NodeOp
from .chunking import fill_value


class LimaMode(str, enum.Enum):
    VDS = "vds"  # HDF5 files: a virtual dataset (relative paths, sources not opened)
    EXTERNAL = "external"  # EDF raw data as an HDF5 external dataset
    COPY = "copy"  # frames copied into the scan file by the writer ranks
    URIS = "uris"  # '<file>::<index>' strings
    NONE = "none"  # not saved: an empty detector group


def lima_mode(lima_info: dict[str, Any], options: SaveOptions) -> LimaMode:
    """The storage of a Lima stream's frames, from its lima_info and the device options."""
    if not lima_info.get("file_path") or not lima_info.get("frame_per_file"):
        return LimaMode.NONE
    fmt = str(lima_info.get("file_format") or "").lower()
    if fmt.startswith("hdf5") and options.allow_external_hdf5:
        return LimaMode.VDS
    if fmt == "edf" and options.allow_external_nonhdf5:
        return LimaMode.EXTERNAL
    if (fmt.startswith("hdf5") or fmt.startswith("edf")) and options.copy_non_external:
        return LimaMode.COPY
    return LimaMode.URIS


def relative_to(filename: str, path: str) -> str:
    """`path` relative to the directory of `filename`, absolute if that would need '..'."""
    rel = os.path.relpath(path, os.path.dirname(filename))
    return path if rel.startswith("..") else rel


def frame_nodes(mode: LimaMode, path: str, filename: str, refs: list[Any], dtype: str,
                frame_shape: tuple[int, ...], frame_per_file: int,
                edf_blocks: list[tuple[str, int, int]] | None = None) -> list[Node]:
    """The frames at `path`: a VDS over the Lima files, an external dataset over EDF files
    (`edf_blocks`: file, offset, size per frame), or their '<file>::<index>' references."""
    if not refs or mode in (LimaMode.COPY, LimaMode.NONE):
        return []
    if mode == LimaMode.URIS:
        return [Node(NodeOp.VALUE, path, [f"{relative_to(filename, r.file_path)}::{r.index}" for r in refs],
                     overwrite=True)]
    shape = (len(refs),) + tuple(frame_shape)
    if mode == LimaMode.EXTERNAL:
        spec = {"shape": shape, "dtype": dtype, "files": list(edf_blocks or [])}
        return [Node(NodeOp.EXTERNAL, path, spec, attrs={"interpretation": "image"})]
    sources: list[list[Any]] = []
    for target, ref in enumerate(refs):
        last = sources[-1] if sources else None
        file = relative_to(filename, ref.file_path)
        if (last and last[0] == file and last[1] == ref.data_path
                and last[3] + last[5] == ref.index and last[4] + last[5] == target):
            last[5] += 1
        else:
            sources.append([file, ref.data_path, (int(frame_per_file),) + tuple(frame_shape), ref.index, target, 1])
    spec = {"shape": shape, "dtype": dtype, "fillvalue": fill_value(dtype), "sources": [tuple(s) for s in sources]}
    return [Node(NodeOp.VDS, path, spec, attrs={"interpretation": "image"})]
