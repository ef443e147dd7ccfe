"""RANK 0 ONLY: what the driver adds to a scan's file at the end, from what Redis says then.

Lima frames left in Lima's files (virtual dataset, EDF external dataset — EDF headers are parsed
here, waiting up to lima_files.GROW_WAIT_S for growing files — or references), links to the
children of a scan sequence, and the mesh axes of the plots (each motor's positions averaged over
the other grid dimensions). One function per stream kind (REFERENCE_NODES). Lima files and the files of
a sequence's children are checked against the allowed roots (path_checks.py) here too, whatever was
checked during the scan: what is outside is not linked (a warning in the log).
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Callable

import numpy as np

from ..nexus.file_plan import FilePlan, StreamKind
from ..nexus.lima_plan import LimaMode
from ..protocol.steps import Node
from ..sources.blissdata_raw import frame_ref
from ..sources.lima_files import edf_blocks, edf_byteorder
from .path_checks import DetectorFiles, policy_of
from .row_writes import StreamProgress
from .scan_source import ScanSource

log = logging.getLogger("nxpar.scan")


def lima_frame_nodes(plan: FilePlan, source: ScanSource, p: StreamProgress, lima_info: dict[str, Any]) -> list[Node]:
    """Lima frames as a VDS, an EDF external dataset or references (nothing when not saved)."""
    mode = plan.lima_mode(lima_info)
    if not p.available or mode == LimaMode.NONE:
        return []
    refs = source.references(p.name, 0, p.available)
    refused = DetectorFiles(policy_of(plan)).refusal(ref.file_path for ref in refs)
    if refused:
        log.warning("scan %s: %s: Lima files: %s: not linked", source.info.get("name"), p.name, refused)
        return []
    dtype, shape = source.frame_dtype(p.name), source.dtype_shape(p.name)[1]
    blocks, dtype_str = None, dtype.name
    if mode == LimaMode.EXTERNAL:  # EDF: where each frame's data is
        blocks = edf_blocks([frame_ref(r) for r in refs], dtype.itemsize * math.prod(shape))
        dtype_str = dtype.newbyteorder(edf_byteorder(refs[0].file_path)).str
    return plan.lima_nodes(p.name, refs, dtype_str, shape, lima_info, blocks)


def sequence_nodes(plan: FilePlan, source: ScanSource, p: StreamProgress, lima_info: dict[str, Any]) -> list[Node]:
    """Root links to the saved children of a scan sequence."""
    if not p.available:
        return []
    files, children = DetectorFiles(policy_of(plan)), []
    for child in source.children_info(p.name, p.available):
        refused = files.refusal([child["filename"]]) if child.get("filename") else ""
        if refused:
            log.warning("scan %s: child scan %s not linked: %s", source.info.get("name"), child.get("name"), refused)
        else:
            children.append(child)
    return plan.sequence_nodes(children)


REFERENCE_NODES: dict[StreamKind, Callable[..., list[Node]]] = {
    StreamKind.LIMA: lima_frame_nodes,
    StreamKind.SCAN: sequence_nodes,
}


def reference_nodes(plan: FilePlan, source: ScanSource, streams: list[StreamProgress],
                    lima_infos: dict[str, dict[str, Any]]) -> list[Node]:
    """The end-of-scan nodes of every stream whose kind has some."""
    nodes: list[Node] = []
    for p in streams:
        make = REFERENCE_NODES.get(p.kind)
        if make is not None:
            nodes += make(plan, source, p, lima_infos.get(p.name) or {})
    return nodes


def grid_axis_values(plan: FilePlan, source: ScanSource, streams: dict[str, StreamProgress],
                     scan_name: str) -> dict[str, np.ndarray]:
    """Mesh plots: each mesh motor's positions averaged over the other grid dimensions (small
    scalar streams, read here at finalisation). Never fails the finalisation: no axes then."""
    values: dict[str, np.ndarray] = {}
    try:
        for names in plan.grid_axes().values():
            for dim, name in enumerate(names):
                p = streams.get(name)
                if p is not None and p.written:
                    values[name] = _averaged(source.values(name, p.written), plan.grid, dim)
    except Exception as e:
        log.warning("scan %s: no plot axes: %s", scan_name, e)
    return values


def _averaged(positions: np.ndarray, grid: tuple[int, ...], dim: int) -> np.ndarray:
    """Mean over the grid dims but `dim` of the flat positions (missing points: NaN, ignored)."""
    shape = list(grid)
    shape[0] = max(shape[0], -(-len(positions) // math.prod(shape[1:])))
    full = np.full(math.prod(shape), np.nan)
    full[:len(positions)] = positions
    others = tuple(d for d in range(len(shape)) if d != dim)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of an aborted mesh
        return np.nanmean(full.reshape(shape), axis=others)
