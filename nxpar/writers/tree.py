"""ALL WRITER RANKS: apply metadata nodes (groups, small datasets, links, attributes) to a file.

With the mpio driver these are collective metadata operations: every writer rank applies the
same node list. Small string datasets are fixed-length UTF-8 (parallel HDF5 cannot write
variable-length data); attributes stay variable-length UTF-8.
"""
from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from ..protocol.steps import Node, NodeOp


def to_h5_value(value: Any) -> np.ndarray:
    """A value for a small dataset: strings become fixed-length UTF-8."""
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return np.array(raw, dtype=h5py.string_dtype("utf-8", max(len(raw), 1)))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        raws = [v.encode("utf-8") for v in value]
        return np.array(raws, dtype=h5py.string_dtype("utf-8", max(1, *map(len, raws))))
    if value is None:
        return to_h5_value("None")
    return np.asarray(value)


def to_h5_attr(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    if value is None:
        return "None"
    return value


def set_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        obj.attrs[key] = to_h5_attr(value)


def library_versions() -> dict[str, str]:
    """The versions a scan file is written with (NXroot attributes of a new scan file)."""
    return {"HDF5_Version": h5py.version.hdf5_version, "h5py_version": h5py.version.version}


def set_root_attrs(f: h5py.File, attrs: dict[str, Any]) -> None:
    """NXroot attributes are written once, when the file is first initialised."""
    if f.attrs.get("NX_class") is None:
        set_attrs(f, attrs)


def apply_nodes(f: h5py.File, nodes: list[Node]) -> None:
    """Apply the nodes in order (every writer rank the same list: collective metadata)."""
    for node in nodes:
        try:
            _APPLY[NodeOp(node.op)](f, node)
        except Exception as e:  # the same on every rank: name the node, so the scan's reason says where
            raise RuntimeError(f"{NodeOp(node.op).value} {node.path}: {e}") from e


def _has_link(f: h5py.File, path: str) -> bool:
    return f.get(path, getlink=True) is not None


def _group(f: h5py.File, node: Node) -> None:
    set_attrs(f.require_group(node.path) if node.path != "/" else f, node.attrs)


def _value(f: h5py.File, node: Node) -> None:
    exists = node.path in f or node.path == "/"
    if exists and not node.overwrite:
        return
    if exists or _has_link(f, node.path):
        del f[node.path]
    set_attrs(f.create_dataset(node.path, data=to_h5_value(node.value)), node.attrs)


def _link(f: h5py.File, node: Node) -> None:
    if _has_link(f, node.path):
        if not node.overwrite:
            return
        del f[node.path]
    if node.op == NodeOp.SOFTLINK:
        f[node.path] = h5py.SoftLink(node.target)
    else:
        f[node.path] = h5py.ExternalLink(node.target_file, node.target)


def _replacing(create):
    """A dataset made by `create(f, path, spec)`, replacing whatever had the path."""
    def apply(f: h5py.File, node: Node) -> None:
        if _has_link(f, node.path):
            del f[node.path]
        create(f, node.path, node.value)
        set_attrs(f[node.path], node.attrs)
    return apply


def _attrs(f: h5py.File, node: Node) -> None:
    if node.path == "/":
        set_attrs(f, node.attrs)
    elif node.path in f:
        set_attrs(f[node.path], node.attrs)


def _delete(f: h5py.File, node: Node) -> None:
    if _has_link(f, node.path):
        del f[node.path]


def create_vds(f: h5py.File, path: str, spec: dict[str, Any]) -> None:
    """A virtual dataset over frames in other files (Lima). Source files are not opened.

    spec: shape, dtype, fillvalue, sources = [(file, data_path, source_shape, source_start, target_start, count)].
    """
    layout = h5py.VirtualLayout(shape=tuple(spec["shape"]), dtype=np.dtype(spec["dtype"]))
    for file, data_path, source_shape, src, dst, count in spec["sources"]:
        source = h5py.VirtualSource(file, data_path, shape=tuple(source_shape))
        layout[dst:dst + count] = source[src:src + count]
    f.create_virtual_dataset(path, layout, fillvalue=spec["fillvalue"])


def create_mapped_vds(f: h5py.File, path: str, spec: dict[str, Any]) -> None:
    """A virtual dataset from selections (start/stride/count/block per source): blissdata h5maps,
    and plots showing flat mesh data as the grid (spec: shape, dtype, optional fillvalue, sources).

    Source files are not opened: each source dataspace is the smallest extent that holds its
    selection.
    """
    shape = tuple(spec["shape"])
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if spec.get("fillvalue") is not None:  # what unmapped points / missing source rows read as
        dcpl.set_fill_value(np.array(spec["fillvalue"], dtype=np.dtype(spec["dtype"])))
    for src_file, src_dataset, vsel, ssel in spec["sources"]:
        vspace = h5py.h5s.create_simple(shape)
        _select(vspace, vsel)
        sspace = h5py.h5s.create_simple(_extent(ssel))
        _select(sspace, ssel)
        dcpl.set_virtual(vspace, src_file.encode(), src_dataset.encode(), sspace)
    tid = h5py.h5t.py_create(np.dtype(spec["dtype"]))
    h5py.h5d.create(f.id, path.encode(), tid, h5py.h5s.create_simple(shape), dcpl=dcpl)


def _select(space: Any, sel: dict[str, Any]) -> None:
    space.select_hyperslab(tuple(sel["start"]), tuple(sel["count"]),
                           tuple(sel["stride"]) if sel.get("stride") else None,
                           tuple(sel["block"]) if sel.get("block") else None)


def _extent(sel: dict[str, Any]) -> tuple[int, ...]:
    n = len(sel["start"])
    stride = sel.get("stride") or [1] * n
    block = sel.get("block") or [1] * n
    return tuple(s + (c - 1) * st + b if c else s + b
                 for s, c, st, b in zip(sel["start"], sel["count"], stride, block))


def create_external(f: h5py.File, path: str, spec: dict[str, Any]) -> None:
    """A dataset whose raw data stays in other (non-HDF5) files, e.g. EDF frames: nothing is copied."""
    files = [(name, offset, h5py.h5f.UNLIMITED if size is None else size) for name, offset, size in spec["files"]]
    f.create_dataset(path, shape=tuple(spec["shape"]), dtype=np.dtype(spec["dtype"]), external=files)


_APPLY = {
    NodeOp.GROUP: _group,
    NodeOp.VALUE: _value,
    NodeOp.SOFTLINK: _link,
    NodeOp.EXTLINK: _link,
    NodeOp.VDS: _replacing(create_vds),
    NodeOp.VDS_MAP: _replacing(create_mapped_vds),
    NodeOp.EXTERNAL: _replacing(create_external),
    NodeOp.ATTRS: _attrs,
    NodeOp.DELETE: _delete,
}
