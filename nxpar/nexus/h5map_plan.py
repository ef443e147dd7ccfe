"""Plan a scan whose publisher describes the file itself: blissdata "h5maps" (scan_info["h5maps"]).

Newer blissdata publishes, per file, the HDF5 tree a scan should produce (`blissdata.h5map`
models: groups, inline datasets, stream datasets, links, virtual and external datasets). When
the scan file has such a map, nxpar writes exactly that tree (plus `writer/status` in each
entry, so that an incomplete file says so) instead of deriving one from scan_info (plan.py).
Streams the map does not mention are not written. Lima streams become a VDS / external dataset at
the end (h5map_lima.py); Lima2 and Mosca streams are written at their mapped path as on the scan_info
route (driver/plugin_streams.py, through protocol.PluginPlan). Pure logic, like plan.py.
"""
from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from blissdata import h5map as h5m

from ..protocol.options import SaveOptions
from ..protocol.steps import ArraySpec, Node, NodeOp
from . import h5map_lima
from .chunking import ChunkOptions, dataset_layout, fill_value
from .file_plan import StreamKind
from .lima_plan import LimaMode
from .nodes import failed_nodes, root_attrs, status_nodes
from .scan_info import now_iso, parse_common


def has_h5map(scan_info: dict[str, Any]) -> bool:
    maps = scan_info.get("h5maps")
    return isinstance(maps, dict) and bool(maps)


@dataclass
class MappedStream:
    """A stream written as the dataset at `path` of the map."""

    entry: str
    path: str
    attrs: dict[str, Any]
    # a Lima2/Mosca stream (PluginDataset, protocol.py): known from its stream info, not from the map
    dim: int = 0
    dtype: str | None = None
    detector_shape: tuple[int, ...] | None = None

    @property
    def dataset_path(self) -> str:
        return self.path

    @property
    def dataset_attrs(self) -> dict[str, Any]:
        return dict(self.attrs)

    def spec(self, dtype: str, detector_shape: tuple[int, ...], npoints: int, options: ChunkOptions) -> ArraySpec:
        chunks, scheme = dataset_layout((npoints,), detector_shape, dtype, options)
        return ArraySpec(path=self.path, dtype=dtype, detector_shape=tuple(detector_shape), chunks=chunks,
                         compression=scheme, fillvalue=fill_value(dtype), attrs=dict(self.attrs))


class H5MapPlan:
    """A `FilePlan` (protocol.py): the tree of the publisher's map."""

    # Lima streams: a VDS/external dataset at the end (h5map_lima.py); scan sequences are links in the map
    stream_kinds = (StreamKind.ARRAY, StreamKind.LIMA)

    def __init__(self, scan_info: dict[str, Any], options: SaveOptions, blissdata_version: str = "") -> None:
        self.scan = parse_common(scan_info)  # ValueError naming the key: no file is made
        self.info = scan_info
        self.options = options  # Lima2 copy / Mosca VDS (PluginPlan, protocol.py); Lima follows blisswriter 3.0.0
        self.blissdata_version = blissdata_version
        self.filename = self.scan.filename
        maps = scan_info["h5maps"]
        if self.filename not in maps:
            raise ValueError(f"scan_info['h5maps'] has no map for the scan file {self.filename} "
                             f"(maps: {', '.join(sorted(maps))})")
        self.grid: tuple[int, ...] = ()  # datasets are as mapped: no mesh axes are averaged
        self.root = _parse(maps[self.filename], self.filename)
        self.other_files = {path: _parse(m, path) for path, m in maps.items() if path != self.filename}
        for path, root in self.other_files.items():
            if _streams(root, "/"):
                raise ValueError(f"h5maps[{path!r}] maps streams: streams can only go to the scan file")
        self._entries = sorted(name for name, item in self.root.children.items() if isinstance(item, h5m.Group))
        if not self._entries:
            raise ValueError(f"h5maps[{self.filename!r}] has no entry group")
        self.channels: dict[str, MappedStream] = {}
        for path, stream, attrs in _streams(self.root, "/"):
            entry = path.strip("/").split("/")[0]
            if stream in self.channels:
                raise ValueError(f"h5maps: stream {stream!r} is mapped twice ({self.channels[stream].path}, {path})")
            self.channels[stream] = MappedStream(entry, path, attrs)

    # -- the FilePlan protocol ------------------------------------------------------------------
    @property
    def entry_names(self) -> list[str]:
        return list(self._entries)

    def urls(self) -> list[str]:
        return [f"{self.filename}::/{e}" for e in self._entries]

    def wants(self, stream_name: str) -> bool:
        return stream_name in self.channels

    def channel(self, stream_name: str) -> MappedStream:
        try:
            return self.channels[stream_name]
        except KeyError:
            raise KeyError(f"stream {stream_name!r} is not in the scan's h5map") from None

    def entry_of(self, stream_name: str) -> str:
        return self.channel(stream_name).entry

    def array_spec(self, stream_name: str, dtype: str, detector_shape: tuple[int, ...]) -> ArraySpec:
        return self.channel(stream_name).spec(dtype, detector_shape, self.scan.npoints, self.scan.chunk_options)

    def root_attrs(self) -> dict[str, Any]:
        return {**root_attrs(self.info, self.filename, self.blissdata_version), **_attrs(self.root.attributes)}

    def skeleton(self) -> list[Node]:
        nodes = _static_nodes(self.root, "/")
        for e in self._entries:
            nodes += [Node(NodeOp.GROUP, f"/{e}/writer", attrs={"NX_class": "NXnote"}),
                      Node(NodeOp.VALUE, f"/{e}/writer/status", "STARTING", overwrite=True),
                      Node(NodeOp.VALUE, f"/{e}/writer/date", now_iso(), overwrite=True)]
        return nodes

    def master_links(self) -> dict[str, list[Node]]:
        """Other files of the map (static content only), written by one rank."""
        return {path: _static_nodes(root, "/") for path, root in self.other_files.items()}

    def running(self) -> list[Node]:
        return status_nodes(self._entries, "RUNNING")

    def failed_nodes(self, reason: str) -> list[Node]:
        return failed_nodes(self._entries, reason)

    def dataset_nodes(self, stream_name: str, measurement: bool = True) -> list[Node]:
        return []  # links are part of the static map

    def group_node(self, stream_name: str) -> list[Node]:
        return []  # groups too

    def lima_mode(self, lima_info: dict[str, Any]) -> LimaMode:
        return h5map_lima.lima_mode(lima_info)

    def lima_nodes(self, stream_name: str, refs: list[Any], dtype: str, frame_shape: tuple[int, ...],
                   lima_info: dict[str, Any], edf_blocks: list[tuple[str, int, int]] | None = None) -> list[Node]:
        c = self.channel(stream_name)
        return h5map_lima.lima_nodes(c.path, c.attrs, os.path.dirname(self.filename), refs, dtype, frame_shape,
                                     lima_info, edf_blocks)

    def sequence_nodes(self, children: list[dict[str, Any]]) -> list[Node]:
        return []  # scan sequences are links in the map

    def grid_axes(self) -> dict[str, list[str]]:
        return {}

    def final_nodes(self, final_info: dict[str, Any], failed: bool, written: Mapping[str, int],
                    axis_values: dict[str, np.ndarray] | None = None) -> list[Node]:
        """The map as published at the end (BLISS may complete it at close), then the status."""
        maps = (final_info or {}).get("h5maps") or {}
        root = _parse(maps[self.filename], self.filename) if self.filename in maps else self.root
        return _static_nodes(root, "/") + status_nodes(self._entries, "FAILED" if failed else "SUCCEEDED")


# -- h5map → nodes ---------------------------------------------------------------------------------
def _parse(raw: Any, path: str) -> h5m.Group:
    try:
        return h5m.Group.model_validate(raw)
    except Exception as e:
        raise ValueError(f"h5maps[{path!r}] is not a valid blissdata h5map: {e}") from None


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name


def _streams(group: h5m.Group, path: str) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for name, item in group.children.items():
        p = _join(path, name)
        if isinstance(item, h5m.Group):
            found += _streams(item, p)
        elif isinstance(item, h5m.Dataset) and isinstance(item.value, h5m.Stream):
            found.append((p, item.value.stream, _attrs(item.attributes)))
    return found


def _static_nodes(group: h5m.Group, path: str) -> list[Node]:
    """Groups, inline datasets, links, virtual and external datasets; stream datasets are left to
    the writers (created at their first rows). Parents come before children, links last."""
    nodes = [Node(NodeOp.GROUP, path, attrs=_attrs(group.attributes))] if path != "/" else \
        [Node(NodeOp.ATTRS, "/", attrs=_attrs(group.attributes))]
    links = []
    for name, item in group.children.items():
        p = _join(path, name)
        if isinstance(item, h5m.Group):
            nodes += _static_nodes(item, p)
        elif isinstance(item, h5m.Dataset):
            if not isinstance(item.value, h5m.Stream):
                nodes.append(Node(NodeOp.VALUE, p, _value(item.value.decode()), attrs=_attrs(item.attributes),
                                  overwrite=True))
        elif isinstance(item, h5m.SoftLink):
            links.append(Node(NodeOp.SOFTLINK, p, target=_link_target(path, item.target_path), overwrite=True))
        elif isinstance(item, h5m.ExternalLink):
            links.append(Node(NodeOp.EXTLINK, p, target=item.target_path, target_file=item.target_file, overwrite=True))
        elif isinstance(item, h5m.VirtualDataset):
            spec = {"shape": tuple(item.shape), "dtype": np.dtype(item.dtype).str,
                    "sources": [(s.src_file, s.src_dataset, _selection(s.vspace), _selection(s.src_space))
                                for s in item.virtual_sources]}
            nodes.append(Node(NodeOp.VDS_MAP, p, spec, attrs=_attrs(item.attributes)))
        elif isinstance(item, h5m.ExternalBinaryDataset):
            spec = {"shape": tuple(item.shape), "dtype": np.dtype(item.dtype).str,
                    "files": [(f.name, f.offset, f.size) for f in item.files]}
            nodes.append(Node(NodeOp.EXTERNAL, p, spec, attrs=_attrs(item.attributes)))
    return nodes + links


def _link_target(group_path: str, target: str) -> str:
    """HDF5 resolves relative soft links from the link's group but knows no '..': make those absolute."""
    parts = target.split("/")
    if target.startswith("/") or not ({".", ".."} & set(parts)):
        return target
    return posixpath.normpath(posixpath.join(group_path, target))


def _selection(sel: h5m.SpaceSelection) -> dict[str, Any]:
    return {"start": list(sel.start), "count": list(sel.count), "stride": sel.stride and list(sel.stride),
            "block": sel.block and list(sel.block)}


def _value(decoded: np.ndarray) -> Any:
    """Decoded h5map values: numbers stay numpy; strings (object arrays of bytes) become str."""
    if decoded.dtype.names:
        return _fixed_strings(decoded)
    if decoded.dtype == object:
        strings = [v.decode() if isinstance(v, bytes) else str(v) for v in decoded.ravel()]
        return strings[0] if decoded.shape == () else strings
    return decoded


def _fixed_strings(rec: np.ndarray) -> np.ndarray:
    """Compound values: variable-length string columns → fixed-length (parallel HDF5 writes no vlen)."""
    fields = []
    for name in rec.dtype.names:
        column = rec[name]
        if column.dtype == object:
            size = max([len(v) for v in column.ravel()] + [1])
            fields.append((name, f"S{size}"))
        else:
            fields.append((name, column.dtype))
    out = np.empty(rec.shape, dtype=fields)
    for name in rec.dtype.names:
        out[name] = rec[name]
    return out


def _attrs(attributes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, item in attributes.items():
        if isinstance(item, h5m.Stream):
            raise ValueError(f"attribute {key!r}: a stream cannot be an attribute")
        value = _value(item.decode())
        out[key] = value.item() if isinstance(value, np.ndarray) and value.shape == () else value
    return out
