"""How Lima2 and Mosca channels (blissdata plugin streams) are stored: pure decisions and nodes.

Lima2 frames are linked (a virtual dataset over the receivers' files during the scan, over the
master file Lima2 writes at the end once it exists), or copied by the writer ranks on request;
Mosca spectra are copied by the writer ranks (spectrum-sized chunks, compressed), or a virtual
dataset over Mosca's files when asked (device property `mosca_vds`).
Everything here works from the stream *info* alone: no plugin, conductor or server is needed.
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass, replace
from typing import Any

from ..protocol.steps import ArraySpec, Node, Piece
from .chunking import fill_value


class PluginMode(str, enum.Enum):
    """What is written for a plugin channel (also its StreamProgress kind on rank 0)."""

    LIMA2_LINK = "lima2_link"  # VDS over the receivers' files, then the master file, as frames are reported
    LIMA2_COPY = "lima2_copy"  # frames read from the receivers' (or master) files by the writer ranks
    MOSCA_COPY = "mosca_copy"  # spectra read from Mosca's files by the writer ranks
    MOSCA_VDS = "mosca_vds"  # VDS over Mosca's files
    MOSCA_SERVER = "mosca_server"  # spectra Mosca does not save, read from the Mosca server by the writer ranks
    GROUP_ONLY = "plugin_group"  # nothing to read (not saved): the detector group and a warning

    @property
    def copied(self) -> bool:
        return self in (PluginMode.LIMA2_COPY, PluginMode.MOSCA_COPY, PluginMode.MOSCA_SERVER)


COPIED_KINDS = tuple(m.value for m in PluginMode if m.copied)
LINKED_KINDS = tuple(m.value for m in PluginMode if not m.copied)
PLUGIN_KINDS = COPIED_KINDS + LINKED_KINDS
PLUGINS = ("lima2", "mosca")


@dataclass(frozen=True)
class Lima2Info:
    dtype: str
    shape: tuple[int, ...]
    master: tuple[str, str] | None  # (master file, dataset path in it); None: not saved

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> "Lima2Info":
        master = info.get("master_file")
        if master is not None:
            path, dataset = master
            master = (str(path), "/" + str(dataset).lstrip("/"))
        return cls(str(info["dtype"]), tuple(int(n) for n in info["shape"]), master)


def lima2_mode(info: Lima2Info, allow_external_hdf5: bool, copy_non_external: bool) -> PluginMode:
    """As Lima HDF5 frames (docs/interface.md §4.5): linked unless external HDF5 is disabled and copying asked."""
    if info.master is None or not all(n > 0 for n in info.shape):
        return PluginMode.GROUP_ONLY
    if not allow_external_hdf5 and copy_non_external:
        return PluginMode.LIMA2_COPY
    return PluginMode.LIMA2_LINK


def relative_to(scan_file: str, path: str) -> str:
    """Relative to the scan file's directory, absolute if that would need '..'."""
    rel = os.path.relpath(path, os.path.dirname(scan_file))
    return path if rel.startswith("..") else rel


def lima2_vds_node(dataset_path: str, scan_file: str, info: Lima2Info, frames: int) -> Node:
    """The first `frames` frames of the master file's dataset as a VDS in the scan file (relative
    path, the master not opened: it appears when the acquisition ends, frames read as 0 before)."""
    assert info.master is not None
    shape = (frames,) + info.shape
    spec = {"shape": shape, "dtype": info.dtype, "fillvalue": fill_value(info.dtype),
            "sources": [(relative_to(scan_file, info.master[0]), info.master[1], shape, 0, 0, frames)]}
    interpretation = {1: "spectrum", 2: "image", 3: "vertex"}.get(len(info.shape))
    return Node("vds", dataset_path, spec, attrs={"interpretation": interpretation} if interpretation else {})


def lima2_receivers_vds_node(dataset_path: str, scan_file: str, info: Lima2Info, frames: int,
                             pieces: list[Piece]) -> Node:
    """The first `frames` frames straight from the receivers' files (relative paths, files not
    opened), while the master file does not exist yet: each piece is every R-th frame of the
    VDS from consecutive (1, C, H, W) rows of one file; frames not written yet read as the fill."""
    nd = len(info.shape)
    file_frame = (1,) * (3 - nd) + info.shape
    sources = [(relative_to(scan_file, path), dataset,
                {"start": [first] + [0] * nd, "stride": [stride] + [1] * nd, "count": [count] + [1] * nd,
                 "block": [1, *info.shape]},
                {"start": [index, 0, 0, 0], "count": [1, 1, 1, 1], "block": [count, *file_frame]})
               for path, dataset, index, count, first, stride in pieces]
    spec = {"shape": (frames,) + info.shape, "dtype": info.dtype, "fillvalue": fill_value(info.dtype),
            "sources": sources}
    interpretation = {1: "spectrum", 2: "image", 3: "vertex"}.get(nd)
    return Node("vds_map", dataset_path, spec, attrs={"interpretation": interpretation} if interpretation else {})


def mosca_vds_node(dataset_path: str, scan_file: str, runs: list[tuple[str, str, int, int]], dtype: str,
                   nchannels: int, points_per_file: int) -> Node:
    """Spectra in Mosca's files as a VDS (relative paths, files not opened)."""
    total = sum(count for *_, count in runs)
    sources, target = [], 0
    for path, dataset, index, count in runs:
        sources.append((relative_to(scan_file, path), dataset, (points_per_file, nchannels), index, target, count))
        target += count
    spec = {"shape": (total, nchannels), "dtype": dtype, "fillvalue": fill_value(dtype), "sources": sources}
    return Node("vds", dataset_path, spec, attrs={"interpretation": "spectrum"})


def spectrum_chunks(spec: ArraySpec, chunk_nbytes: int, npoints: int, scheme_named: bool) -> ArraySpec:
    """Mosca spectra: whole spectra per chunk (about `chunk_nbytes`), bitshuffle-LZ4 (Mosca's own
    filter) unless the scan named a scheme; grids (keepshape) keep the plan's chunks."""
    if spec.scan_shape or len(spec.detector_shape) != 1:
        return spec
    rows = max(chunk_nbytes // max(spec.row_nbytes, 1), 1)
    if npoints > 0:
        rows = min(rows, npoints)
    compression = spec.compression if scheme_named or spec.compression == "none" else "lz4-bitshuffle"
    return replace(spec, chunks=(rows,) + tuple(spec.detector_shape), compression=compression)
