"""Plan one scan's NeXus content from its scan_info (blisswriter's layout): entries, datasets,
links, plots, master-file links; the entries' metadata nodes come from `entry_metadata.py`.

Pure logic: produces `Node` lists and `ArraySpec`s that the writer ranks apply collectively.
scan_info is parsed and validated first (scan_info.py), so malformed input fails with a clear
message before any file is touched.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..protocol.options import SaveOptions
from ..protocol.steps import ArraySpec, Node, NodeOp
from .channel_mapping import ChannelMap, map_subscan, normalise
from .chunking import ChunkOptions, dataset_layout, fill_value
from .entry_metadata import end_metadata, notes, start_metadata
from .file_plan import StreamKind
from .lima_plan import LimaMode, frame_nodes, lima_mode
from .nodes import failed_nodes, root_attrs, scalar, status_nodes
from .plots import Plotted, plot_nodes, wanted_channels
from .scan_info import iso_with_tz, now_iso, parse


@dataclass
class ChannelPlan:
    entry: str
    map: ChannelMap
    dim: int
    saved_grid: tuple[int, ...] = ()  # the nD grid when the scan keeps its shape (keepshape), else () = flat
    # the dataset as planned (spec() or lima_nodes()), remembered for the plots
    dtype: str | None = None
    detector_shape: tuple[int, ...] | None = None

    @property
    def dataset_path(self) -> str:
        return f"/{self.entry}/{self.map.dataset}"

    @property
    def dataset_attrs(self) -> dict[str, Any]:
        return {}  # blisswriter's layout: the attributes come with each kind of dataset

    def spec(self, dtype: str, detector_shape: tuple[int, ...], npoints: int, options: ChunkOptions) -> ArraySpec:
        """The dataset of `saved_grid`'s shape (keepshape) or flat, `npoints` expected."""
        grid = self.saved_grid
        self.dtype, self.detector_shape = dtype, tuple(detector_shape)
        chunks, scheme = dataset_layout(grid or (npoints,), detector_shape, dtype, options)
        attrs: dict[str, Any] = {}
        units = self.map.data_info.get("units")
        if units:
            attrs["units"] = units
        # spectrum / image / vertex by the dims that are not the flat scan axis
        interpretation = {1: "spectrum", 2: "image", 3: "vertex"}.get(len(detector_shape) + len(grid))
        if interpretation:
            attrs["interpretation"] = interpretation
        return ArraySpec(path=self.dataset_path, dtype=dtype,
                         detector_shape=tuple(detector_shape), chunks=chunks, compression=scheme,
                         fillvalue=fill_value(dtype), attrs=attrs, scan_shape=tuple(grid))


class ScanPlan:
    """Everything rank 0 needs to drive the writers for one scan."""

    def __init__(self, scan_info: dict[str, Any], options: SaveOptions, blissdata_version: str = "") -> None:
        self.scan = parse(scan_info)  # ValueError naming the key: the scan FAULTs, no file is made
        self.info = scan_info
        self.options = options
        self.dataset_filename: str = self.scan.dataset_filename
        self.filename: str = self.scan.filename
        self.scan_nb: int = scan_info["scan_nb"]
        # the scan's nD grid (plots, averaged axes); datasets have it only with keepshape (not flat)
        self.grid: tuple[int, ...] = self.scan.grid
        self.saved_grid: tuple[int, ...] = () if options.flat else self.grid
        nxw = scan_info.get("nexuswriter") or {} if options.configurable else {}
        self.config_devices = nxw.get("devices") or {}
        self.instrument_info = nxw.get("instrument_info") or {}
        self.masterfiles = dict(nxw.get("masterfiles") or {})
        if not self.masterfiles and self.filename != self.dataset_filename:
            self.masterfiles = {"dataset": self.dataset_filename}
        self.blissdata_version = blissdata_version
        self.entries, self.channels = self._map_channels(scan_info)

    def _map_channels(self, scan_info: dict[str, Any]) -> tuple[dict[str, str], dict[str, ChannelPlan]]:
        """Entries '<nb>.<k>' by sorted top master, and the NeXus place of every channel."""
        tops = {}
        for top, pairs in _subscans(scan_info).items():
            if pairs:
                tops[top] = map_subscan(scan_info, top, self.config_devices,  # nD scans: no positioner groups
                                        self.options.multivalue_positioners, max(len(self.grid), 1))
        if not tops:
            raise ValueError("acquisition_chain has no channel to write")
        entries = {top: f"{self.scan_nb}.{i}" for i, top in enumerate(sorted(tops), 1)}
        channels_info = scan_info.get("channels", {})
        channels: dict[str, ChannelPlan] = {}
        for top, maps in tops.items():
            for fullname, m in maps.items():
                dim = int(channels_info.get(fullname, {}).get("dim", 0) or 0)
                channels[fullname] = ChannelPlan(entries[top], m, dim, self.saved_grid)
        return entries, channels

    @property
    def entry_names(self) -> list[str]:
        return sorted(self.entries.values())

    def urls(self) -> list[str]:
        return [f"{self.filename}::/{e}" for e in self.entry_names]

    # -- file initialisation ---------------------------------------------------------------------
    stream_kinds = (StreamKind.ARRAY, StreamKind.LIMA, StreamKind.LIMA_COPY, StreamKind.SCAN)

    def wants(self, stream_name: str) -> bool:
        """Every stream of the scan is written (an unknown one is an error, see channel())."""
        return True

    def root_attrs(self) -> dict[str, Any]:
        return root_attrs(self.info, self.filename, self.blissdata_version)

    def skeleton(self) -> list[Node]:
        nodes: list[Node] = []
        for entry in self.entry_names:
            e = f"/{entry}"
            nodes += [Node(NodeOp.GROUP, e, attrs={"NX_class": "NXentry"}),
                      Node(NodeOp.VALUE, f"{e}/title", self.info["title"]),
                      Node(NodeOp.VALUE, f"{e}/start_time", iso_with_tz(self.info["start_time"])),
                      Node(NodeOp.GROUP, f"{e}/writer", attrs={"NX_class": "NXnote"}),
                      Node(NodeOp.VALUE, f"{e}/writer/status", "STARTING"),
                      Node(NodeOp.VALUE, f"{e}/writer/date", now_iso()),
                      Node(NodeOp.GROUP, f"{e}/instrument", attrs={"NX_class": "NXinstrument"})]
            if self.info.get("count_time"):
                nodes += [Node(NodeOp.GROUP, f"{e}/scan_parameters", attrs={"NX_class": "NXparameters"}),
                          Node(NodeOp.VALUE, f"{e}/scan_parameters/count_time", float(self.info["count_time"]),
                               attrs={"units": "s"})]
            if self.instrument_info.get("name"):
                attrs = {}
                if self.instrument_info.get("name@short_name"):
                    attrs["short_name"] = self.instrument_info["name@short_name"]
                nodes.append(Node(NodeOp.VALUE, f"{e}/instrument/name", self.instrument_info["name"], attrs=attrs))
            nodes += start_metadata(self.info, e, self._device_groups())
        return nodes

    def failed_nodes(self, reason: str) -> list[Node]:
        return failed_nodes(self.entry_names, reason)

    def running(self) -> list[Node]:
        return status_nodes(self.entry_names, "RUNNING")

    def _device_groups(self) -> set[str]:
        """The normalised names of the scan's device groups (`instrument/<name>`)."""
        return {normalise(c.map.device_name) for c in self.channels.values()}

    # -- per dataset ------------------------------------------------------------------------------
    def entry_of(self, stream_name: str) -> str:
        return self.channel(stream_name).entry

    def array_spec(self, stream_name: str, dtype: str, detector_shape: tuple[int, ...]) -> ArraySpec:
        return self.channel(stream_name).spec(dtype, detector_shape, self.scan.npoints, self.scan.chunk_options)

    def channel(self, stream_name: str) -> ChannelPlan:
        try:
            return self.channels[stream_name]
        except KeyError:
            raise KeyError(f"stream {stream_name!r} is not a channel of any device in the acquisition chain") from None

    def dataset_nodes(self, stream_name: str, measurement: bool = True) -> list[Node]:
        """Groups/links that come with a channel's dataset (written after its first rows)."""
        c = self.channel(stream_name)
        e = f"/{c.entry}"
        m = c.map
        nodes = self.group_node(stream_name)
        if m.alias:  # relative: the dataset next to it (as BLISS expects)
            nodes.append(Node(NodeOp.SOFTLINK, f"{e}/{m.alias}", target=normalise(m.data_name)))
        if measurement:  # created with its first link, as blisswriter does (a Sequence has none)
            nodes.append(Node(NodeOp.GROUP, f"{e}/measurement", attrs={"NX_class": "NXcollection"}))
            nodes.append(Node(NodeOp.SOFTLINK, f"{e}/{m.measurement}", target=f"{e}/{m.dataset}"))
        if m.is_positioner:
            nodes.append(Node(NodeOp.SOFTLINK, f"{e}/instrument/positioners/{normalise(m.unique_name)}",
                              target=f"{e}/{m.dataset}", overwrite=True))
        return nodes

    def group_node(self, stream_name: str) -> list[Node]:
        """The device group with its device_info (alone: a Lima stream without saving)."""
        c = self.channel(stream_name)
        e = f"/{c.entry}"
        nodes = [Node(NodeOp.GROUP, f"{e}/{c.map.group}", attrs={"NX_class": c.map.nx_class})]
        nodes += [Node(NodeOp.VALUE, f"{e}/{c.map.group}/{normalise(k)}", scalar(v)) for k, v in c.map.device_info.items()]
        return nodes

    # -- Lima frames ---------------------------------------------------------------------------
    def lima_mode(self, lima_info: dict[str, Any]) -> LimaMode:
        return lima_mode(lima_info, self.options)

    def lima_nodes(self, stream_name: str, refs: list[Any], dtype: str, frame_shape: tuple[int, ...],
                   lima_info: dict[str, Any], edf_blocks: list[tuple[str, int, int]] | None = None) -> list[Node]:
        """The frames as a VDS over the Lima files, an external dataset over EDF files
        (`edf_blocks`: file, offset, size per frame), or their '<file>::<index>' references."""
        c = self.channel(stream_name)
        mode = self.lima_mode(lima_info)
        if refs and mode in (LimaMode.VDS, LimaMode.EXTERNAL):  # a frame dataset the plots can show
            c.dtype, c.detector_shape = dtype, tuple(frame_shape)
        return frame_nodes(mode, f"/{c.entry}/{c.map.dataset}", self.filename, refs, dtype, frame_shape,
                           int(lima_info.get("frame_per_file") or 0), edf_blocks)

    # -- scan sequences --------------------------------------------------------------------------
    def sequence_nodes(self, children: list[dict[str, Any]]) -> list[Node]:
        """Root links '<nb>.<k>' to saved child scans written into other files."""
        nodes = []
        for child in children:
            filename, nb = child.get("filename"), child.get("scan_nb")
            if not child.get("save") or not filename or not nb or filename == self.filename:
                continue
            tops = [t for t, chain in (child.get("acquisition_chain") or {}).items() if chain.get("devices")]
            for k in range(1, max(len(tops), 1) + 1):
                nodes.append(Node(NodeOp.EXTLINK, f"/{nb}.{k}", target=f"/{nb}.{k}", target_file=filename))
        return nodes

    # -- finalisation -----------------------------------------------------------------------------
    def grid_axes(self) -> dict[str, list[str]]:
        """{entry: [master positioner channel per grid dimension, slow first]} of a mesh (flat or keepshape).

        BLISS lists a mesh's motors fast first (master_index 0 = npoints1, the last grid dimension)."""
        if not self.grid:
            return {}
        axes: dict[str, list[str]] = {}
        for entry in self.entry_names:
            masters = sorted((c.map.master_index, name) for name, c in self.channels.items()
                             if c.entry == entry and c.map.is_positioner and c.map.master_index >= 0
                             and c.map.data_type == "principal")
            if len(masters) >= len(self.grid):
                axes[entry] = [name for _, name in reversed(masters[:len(self.grid)])]
        return axes

    def final_nodes(self, final_info: dict[str, Any], failed: bool, written: Mapping[str, int],
                    axis_values: dict[str, np.ndarray] | None = None) -> list[Node]:
        """written: rows written per stream (those with any); axis_values: {mesh motor channel: its
        positions averaged over the other grid dimensions}."""
        self.info = {**self.info, **final_info}
        nodes: list[Node] = []
        status = "FAILED" if failed else "SUCCEEDED"
        for entry in self.entry_names:
            e = f"/{entry}"
            nodes += end_metadata(self.info, e, self._device_groups())
            nodes += self._plot(entry, written, axis_values or {})
            nodes += notes(self.info, e)
            nodes += [Node(NodeOp.VALUE, f"{e}/end_reason", str(self.info.get("end_reason", "NOT STARTED")), overwrite=True),
                      Node(NodeOp.VALUE, f"{e}/end_time", now_iso(), overwrite=True),
                      Node(NodeOp.VALUE, f"{e}/writer/status", status, overwrite=True)]
        nodes.append(Node(NodeOp.ATTRS, "/", attrs={"default": self.entry_names[-1]}))
        return nodes

    def _plot(self, entry: str, written: Mapping[str, int], axis_values: dict[str, np.ndarray]) -> list[Node]:
        """The plotselect NXdata of one entry (`plots.py`); `written`: rows per stream."""
        wanted = wanted_channels(self.info)
        if not wanted:
            return []
        items = [Plotted(name, c.map, c.dim, c.dtype, c.detector_shape, written[name]) for name, c in self.channels.items()
                 if c.entry == entry and name in written and (c.dtype is not None or c.map.is_positioner)]
        return plot_nodes(entry, items, wanted, self.grid, bool(self.saved_grid), axis_values,
                          self.grid_axes().get(entry, []))

    # -- master files -----------------------------------------------------------------------------
    def master_links(self) -> dict[str, list[Node]]:
        links: dict[str, list[Node]] = {}
        base = os.path.splitext(os.path.basename(self.filename))[0]
        for level, path in (self.masterfiles or {}).items():
            if not isinstance(path, str) or not os.path.isabs(path) or path == self.filename:
                continue
            rel = os.path.relpath(self.filename, os.path.dirname(path))
            links[path] = [Node(NodeOp.EXTLINK, f"/{entry if level == 'dataset' else base + '_' + entry}",
                                target=f"/{entry}", target_file=rel) for entry in self.entry_names]
        return links



def _subscans(scan_info: dict[str, Any]) -> dict[str, list[str]]:
    devices = scan_info["devices"]
    return {top: [ch for dev in chain.get("devices", []) for ch in devices[dev].get("channels", [])]
            for top, chain in scan_info["acquisition_chain"].items()}
