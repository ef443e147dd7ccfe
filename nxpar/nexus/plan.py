"""Plan one scan's NeXus content from its scan_info (spec §4): entries, datasets, links, metadata.

Pure logic: produces `Node` lists and `ArraySpec`s that the writer ranks apply collectively.
Validation of scan_info happens here, so malformed input fails with a clear message before any
file is touched.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ..steps import ArraySpec, Node
from .chunking import ChunkOptions, dataset_layout, fill_value
from .esrf_metadata import sample_tree
from .mapping import ChannelMap, map_subscan, normalise
from .plots import Plotted, plot_nodes, wanted_channels

MANDATORY = ("name", "filename", "scan_nb", "title", "start_time", "acquisition_chain", "devices",
             "scan_meta_categories")


def now_iso() -> str:
    return datetime.datetime.now().astimezone().isoformat()


def iso_with_tz(value: str) -> str:
    dt = datetime.datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.isoformat()


@dataclass
class SaveOptions:
    """The device's save options (spec §2.2)."""

    flat: bool = True
    multivalue_positioners: bool = False
    allow_external_nonhdf5: bool = False
    allow_external_hdf5: bool = True
    copy_non_external: bool = False
    mosca_vds: bool = False  # Mosca spectra: a VDS over Mosca's files instead of copies
    configurable: bool = True
    required_disk_space: float = 200.0
    recommended_disk_space: float = 1024.0
    writer_name: str = "nexus"


@dataclass
class ChannelPlan:
    entry: str
    map: ChannelMap
    dim: int
    saved_grid: tuple[int, ...] = ()  # the nD grid when the scan keeps its shape (keepshape), else () = flat
    # the dataset as planned (spec() or lima_nodes()), remembered for the plots
    dtype: str | None = None
    detector_shape: tuple[int, ...] | None = None

    def spec(self, dtype: str, detector_shape: tuple[int, ...], npoints: int, options: ChunkOptions,
             grid: tuple[int, ...] = ()) -> ArraySpec:
        """grid: ignored (callers pass the plan's grid); the dataset has `saved_grid`'s shape or is flat."""
        grid = self.saved_grid
        self.dtype, self.detector_shape = dtype, tuple(detector_shape)
        chunks, scheme = dataset_layout(grid or (npoints,), detector_shape, dtype, options)
        attrs: dict[str, Any] = {}
        units = self.map.data_info.get("units")
        if units:
            attrs["units"] = units
        # spectrum / image / vertex by the dims that are not the flat scan axis (spec §4.6)
        interpretation = {1: "spectrum", 2: "image", 3: "vertex"}.get(len(detector_shape) + len(grid))
        if interpretation:
            attrs["interpretation"] = interpretation
        return ArraySpec(path=f"/{self.entry}/{self.map.dataset}", dtype=dtype,
                         detector_shape=tuple(detector_shape), chunks=chunks, compression=scheme,
                         fillvalue=fill_value(dtype), attrs=attrs, scan_shape=tuple(grid))


def saving_enabled(scan_info: dict[str, Any], writer_name: str) -> bool:
    return bool(scan_info.get("save")) and scan_info.get("data_writer") == writer_name


def validate_filename(filename: Any) -> None:
    """scan_info['filename']: a non-empty absolute path without '..' (ValueError otherwise)."""
    if not isinstance(filename, str) or not filename:
        raise ValueError(f"scan_info['filename'] must be a non-empty string, got {filename!r}")
    if not os.path.isabs(filename):
        raise ValueError(f"scan_info['filename'] must be an absolute path, got {filename!r}")
    if ".." in filename.split(os.sep):
        raise ValueError(f"scan_info['filename'] must not contain '..': {filename!r}")


def validate(scan_info: dict[str, Any]) -> None:
    """Raise ValueError naming the first problem (→ scan FAULT with that reason)."""
    missing = [k for k in MANDATORY if k not in scan_info]
    if missing:
        raise ValueError(f"scan_info is missing {', '.join(repr(k) for k in missing)}")
    validate_filename(scan_info.get("filename"))
    nb = scan_info["scan_nb"]
    if isinstance(nb, bool) or not isinstance(nb, int) or nb <= 0:
        raise ValueError(f"scan_info['scan_nb'] must be a positive integer, got {nb!r}")
    if not isinstance(scan_info["title"], str) or not scan_info["title"]:
        raise ValueError("scan_info['title'] must be a non-empty string")
    try:
        iso_with_tz(scan_info["start_time"])
    except (TypeError, ValueError):
        raise ValueError(f"scan_info['start_time'] is not ISO 8601: {scan_info['start_time']!r}") from None
    chain, devices = scan_info["acquisition_chain"], scan_info["devices"]
    if not isinstance(chain, dict) or not isinstance(devices, dict):
        raise ValueError("scan_info['acquisition_chain'] and ['devices'] must be dictionaries")
    for top, content in chain.items():
        if not isinstance(content, dict) or not isinstance(content.get("devices", []), list):
            raise ValueError(f"acquisition_chain[{top!r}] must have a 'devices' list")
        for dev in content.get("devices", []):
            if dev not in devices or not isinstance(devices[dev].get("channels", []), list):
                raise ValueError(f"device {dev!r} of acquisition_chain[{top!r}] is not described in scan_info['devices']")
    npoints = scan_info.get("npoints", 0)
    if npoints is not None and (isinstance(npoints, bool) or not isinstance(npoints, (int, float))
                                or not np.isfinite(npoints) or npoints < 0):
        raise ValueError(f"scan_info['npoints'] must be a non-negative number, got {npoints!r}")
    if not isinstance(scan_info["scan_meta_categories"], list):
        raise ValueError("scan_info['scan_meta_categories'] must be a list")
    ChunkOptions.from_scan_info(scan_info)


class ScanPlan:
    """Everything rank 0 needs to drive the writers for one scan."""

    def __init__(self, scan_info: dict[str, Any], options: SaveOptions, blissdata_version: str = "") -> None:
        validate(scan_info)
        self.info = scan_info
        self.options = options
        self.dataset_filename: str = scan_info["filename"]
        self.filename: str = scan_file(scan_info)
        self.scan_nb: int = scan_info["scan_nb"]
        self.npoints = int(scan_info.get("npoints") or 0)
        # the scan's nD grid (plots, averaged axes); datasets have it only with keepshape (not flat)
        self.grid: tuple[int, ...] = grid_shape(scan_info)
        self.saved_grid: tuple[int, ...] = () if options.flat else self.grid
        self.chunk_options = ChunkOptions.from_scan_info(scan_info)
        nxw = scan_info.get("nexuswriter") or {} if options.configurable else {}
        self.config_devices = nxw.get("devices") or {}
        self.instrument_info = nxw.get("instrument_info") or {}
        self.masterfiles = dict(nxw.get("masterfiles") or {})
        if not self.masterfiles and self.filename != self.dataset_filename:
            self.masterfiles = {"dataset": self.dataset_filename}
        self.blissdata_version = blissdata_version

        tops = {}
        for top, pairs in _subscans(scan_info).items():
            if pairs:
                tops[top] = map_subscan(scan_info, top, self.config_devices,  # nD scans: no positioner groups
                                        options.multivalue_positioners, max(len(grid_shape(scan_info)), 1))
        if not tops:
            raise ValueError("acquisition_chain has no channel to write")
        self.entries: dict[str, str] = {top: f"{self.scan_nb}.{i}" for i, top in enumerate(sorted(tops), 1)}
        channels_info = scan_info.get("channels", {})
        self.channels: dict[str, ChannelPlan] = {}
        for top, maps in tops.items():
            for fullname, m in maps.items():
                dim = int(channels_info.get(fullname, {}).get("dim", 0) or 0)
                self.channels[fullname] = ChannelPlan(self.entries[top], m, dim, self.saved_grid)

    @property
    def entry_names(self) -> list[str]:
        return sorted(self.entries.values())

    def urls(self) -> list[str]:
        return [f"{self.filename}::/{e}" for e in self.entry_names]

    # -- file initialisation ---------------------------------------------------------------------
    stream_kinds = ("array", "lima", "lima_copy", "scan")

    def wants(self, stream_name: str) -> bool:
        """Every stream of the scan is written (an unknown one is an error, see channel())."""
        return True

    def root_attrs(self) -> dict[str, Any]:
        return root_attrs(self.info, self.filename, self.blissdata_version)

    def skeleton(self) -> list[Node]:
        nodes: list[Node] = []
        for entry in self.entry_names:
            e = f"/{entry}"
            nodes += [Node("group", e, attrs={"NX_class": "NXentry"}),
                      Node("value", f"{e}/title", self.info["title"]),
                      Node("value", f"{e}/start_time", iso_with_tz(self.info["start_time"])),
                      Node("group", f"{e}/writer", attrs={"NX_class": "NXnote"}),
                      Node("value", f"{e}/writer/status", "STARTING"),
                      Node("value", f"{e}/writer/date", now_iso()),
                      Node("group", f"{e}/instrument", attrs={"NX_class": "NXinstrument"})]
            if self.info.get("count_time"):
                nodes += [Node("group", f"{e}/scan_parameters", attrs={"NX_class": "NXparameters"}),
                          Node("value", f"{e}/scan_parameters/count_time", float(self.info["count_time"]),
                               attrs={"units": "s"})]
            if self.instrument_info.get("name"):
                attrs = {}
                if self.instrument_info.get("name@short_name"):
                    attrs["short_name"] = self.instrument_info["name@short_name"]
                nodes.append(Node("value", f"{e}/instrument/name", self.instrument_info["name"], attrs=attrs))
            nodes += self._positioner_snapshots(e, ("start", "dial_start"), also_positioners=True)
            nodes += self._user_metadata(e)
            nodes += self._sample_metadata(e)
        return nodes

    def failed_nodes(self, reason: str) -> list[Node]:
        return failed_nodes(self.entry_names, reason)

    def running(self) -> list[Node]:
        return status_nodes(self.entry_names, "RUNNING")

    def _positioner_snapshots(self, e: str, kinds: tuple[str, ...], also_positioners: bool = False,
                              overwrite: bool = False) -> list[Node]:
        pos = self.info.get("positioners") or {}
        units = pos.get("positioners_units") or {}
        nodes: list[Node] = []
        for kind in kinds:
            values = pos.get(f"positioners_{kind}")
            if not isinstance(values, dict):
                continue
            targets = [f"{e}/instrument/positioners_{kind}"]
            if also_positioners and kind == "start":
                targets.append(f"{e}/instrument/positioners")
            for group in targets:
                nodes.append(Node("group", group, attrs={"NX_class": "NXcollection"}))
                for motor, value in values.items():
                    attrs = {"units": units[motor]} if units.get(motor) else {}
                    nodes.append(Node("value", f"{group}/{normalise(motor)}", _scalar(value), attrs=attrs,
                                      overwrite=overwrite and group.endswith(kind)))
        return nodes

    def _user_metadata(self, e: str) -> list[Node]:
        nodes: list[Node] = []
        device_groups = {normalise(c.map.device_name) for c in self.channels.values()}
        for category in self.info.get("scan_meta_categories", []):
            if category in ("positioners", "nexuswriter") or category not in self.info:
                continue
            value = self.info[category]
            if not isinstance(value, dict):
                nodes.append(Node("value", f"{e}/{normalise(category)}", _scalar(value), overwrite=True))
                continue
            if set(value) <= {"@NX_class", "NX_class"}:
                continue
            if category == "instrument":
                for key, sub in value.items():
                    if isinstance(sub, dict):
                        nx = "NXdetector" if normalise(key) in device_groups else None
                        nodes += dict_to_nodes(f"{e}/instrument/{normalise(key)}", sub, nx)
                continue
            nodes += dict_to_nodes(f"{e}/{normalise(category)}", value)
        return nodes

    def _sample_metadata(self, e: str) -> list[Node]:
        nodes: list[Node] = []
        for key, value in sample_tree(self.info).items():
            if isinstance(value, dict):
                nodes += dict_to_nodes(f"{e}/{normalise(key)}", value)
            else:
                nodes.append(Node("value", f"{e}/{normalise(key)}", _scalar(value), overwrite=True))
        return nodes

    # -- per dataset ------------------------------------------------------------------------------
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
        if m.alias:  # relative: the dataset next to it (spec §4.5)
            nodes.append(Node("softlink", f"{e}/{m.alias}", target=normalise(m.data_name)))
        if measurement:  # created with its first link, as blisswriter does (a Sequence has none)
            nodes.append(Node("group", f"{e}/measurement", attrs={"NX_class": "NXcollection"}))
            nodes.append(Node("softlink", f"{e}/{m.measurement}", target=f"{e}/{m.dataset}"))
        if m.is_positioner:
            nodes.append(Node("softlink", f"{e}/instrument/positioners/{normalise(m.unique_name)}",
                              target=f"{e}/{m.dataset}", overwrite=True))
        return nodes

    def group_node(self, stream_name: str) -> list[Node]:
        """The device group with its device_info (alone: a Lima stream without saving)."""
        c = self.channel(stream_name)
        e = f"/{c.entry}"
        nodes = [Node("group", f"{e}/{c.map.group}", attrs={"NX_class": c.map.nx_class})]
        nodes += [Node("value", f"{e}/{c.map.group}/{normalise(k)}", _scalar(v)) for k, v in c.map.device_info.items()]
        return nodes

    # -- Lima (spec §4.7) -------------------------------------------------------------------------
    def lima_mode(self, lima_info: dict[str, Any]) -> str:
        """How Lima frames are stored (spec §4.7): 'vds' (HDF5 files), 'external' (EDF raw data as an
        HDF5 external dataset), 'copy' (frames copied into the scan file), 'uris' ('<file>::<index>'
        strings) or 'none' (not saved: an empty detector group)."""
        if not lima_info.get("file_path") or not lima_info.get("frame_per_file"):
            return "none"
        fmt = str(lima_info.get("file_format") or "").lower()
        if fmt.startswith("hdf5") and self.options.allow_external_hdf5:
            return "vds"
        if fmt == "edf" and self.options.allow_external_nonhdf5:
            return "external"
        if (fmt.startswith("hdf5") or fmt.startswith("edf")) and self.options.copy_non_external:
            return "copy"
        return "uris"

    def _relative(self, path: str) -> str:
        """Relative to the scan file's directory, absolute if that would need '..'."""
        rel = os.path.relpath(path, os.path.dirname(self.filename))
        return path if rel.startswith("..") else rel

    def lima_nodes(self, stream_name: str, refs: list[Any], dtype: str, frame_shape: tuple[int, ...],
                   lima_info: dict[str, Any], edf_blocks: list[tuple[str, int, int]] | None = None) -> list[Node]:
        """The frames as a VDS over the Lima files, an external dataset over EDF files
        (`edf_blocks`: file, offset, size per frame), or their '<file>::<index>' references."""
        c = self.channel(stream_name)
        path = f"/{c.entry}/{c.map.dataset}"
        mode = self.lima_mode(lima_info)
        if not refs or mode == "copy":
            return []
        if mode != "uris":  # a frame dataset the plots can show
            c.dtype, c.detector_shape = dtype, tuple(frame_shape)
        if mode == "uris":
            return [Node("value", path, [f"{self._relative(r.file_path)}::{r.index}" for r in refs], overwrite=True)]
        if mode == "external":
            spec = {"shape": (len(refs),) + tuple(frame_shape), "dtype": dtype, "files": list(edf_blocks or [])}
            return [Node("external", path, spec, attrs={"interpretation": "image"})]
        sources: list[list[Any]] = []
        for target, ref in enumerate(refs):
            last = sources[-1] if sources else None
            if (last and last[0] == self._relative(ref.file_path) and last[1] == ref.data_path
                    and last[3] + last[5] == ref.index and last[4] + last[5] == target):
                last[5] += 1
            else:
                sources.append([self._relative(ref.file_path), ref.data_path,
                                (int(lima_info["frame_per_file"]),) + tuple(frame_shape), ref.index, target, 1])
        spec = {"shape": (len(refs),) + tuple(frame_shape), "dtype": dtype, "fillvalue": fill_value(dtype),
                "sources": [tuple(s) for s in sources]}
        return [Node("vds", path, spec, attrs={"interpretation": "image"})]

    # -- scan sequences (spec §3.6) -----------------------------------------------------------------
    def sequence_nodes(self, children: list[dict[str, Any]]) -> list[Node]:
        """Root links '<nb>.<k>' to saved child scans written into other files."""
        nodes = []
        for child in children:
            filename, nb = child.get("filename"), child.get("scan_nb")
            if not child.get("save") or not filename or not nb or filename == self.filename:
                continue
            tops = [t for t, chain in (child.get("acquisition_chain") or {}).items() if chain.get("devices")]
            for k in range(1, max(len(tops), 1) + 1):
                nodes.append(Node("extlink", f"/{nb}.{k}", target=f"/{nb}.{k}", target_file=filename))
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

    def final_nodes(self, final_info: dict[str, Any], failed: bool, written: set[str],
                    axis_values: dict[str, np.ndarray] | None = None) -> list[Node]:
        """axis_values: {mesh motor channel: its positions averaged over the other grid dimensions}."""
        self.info = {**self.info, **final_info}
        nodes: list[Node] = []
        status = "FAILED" if failed else "SUCCEEDED"
        for entry in self.entry_names:
            e = f"/{entry}"
            nodes += self._positioner_snapshots(e, ("end", "dial_end"), overwrite=True)
            nodes += self._user_metadata(e)
            nodes += self._sample_metadata(e)
            nodes += self._plot(entry, written, axis_values or {})
            comments = self.info.get("comments") or []
            if comments:
                nodes.append(Node("group", f"{e}/notes", attrs={"NX_class": "NXcollection"}))
                for i, c in enumerate(comments, 1):
                    n = f"{e}/notes/note_{i:02d}"
                    nodes += [Node("group", n, attrs={"NX_class": "NXnote"}),
                              Node("value", f"{n}/data", str(c.get("message", ""))),
                              Node("value", f"{n}/type", "text/plain"),
                              Node("value", f"{n}/date", str(c.get("date", "")))]
            nodes += [Node("value", f"{e}/end_reason", str(self.info.get("end_reason", "NOT STARTED")), overwrite=True),
                      Node("value", f"{e}/end_time", now_iso(), overwrite=True),
                      Node("value", f"{e}/writer/status", status, overwrite=True)]
        nodes.append(Node("attrs", "/", attrs={"default": self.entry_names[-1]}))
        return nodes

    def _plot(self, entry: str, written: set[str], axis_values: dict[str, np.ndarray]) -> list[Node]:
        """The plotselect NXdata of one entry (spec §4.10, `plots.py`)."""
        wanted = wanted_channels(self.info)
        if not wanted:
            return []
        items = [Plotted(name, c.map, c.dim, c.dtype, c.detector_shape) for name, c in self.channels.items()
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
            links[path] = [Node("extlink", f"/{entry if level == 'dataset' else base + '_' + entry}",
                                target=f"/{entry}", target_file=rel) for entry in self.entry_names]
        return links


def status_nodes(entries: list[str], status: str) -> list[Node]:
    return [Node("value", f"/{e}/writer/status", status, overwrite=True) for e in entries]


def failed_nodes(entries: list[str], reason: str) -> list[Node]:
    """Only the status: the scan stopped without finalisation (kill_scan)."""
    return status_nodes(entries, "FAILED") + [Node("value", f"/{e}/writer/failure", reason, overwrite=True)
                                              for e in entries]


def root_attrs(scan_info: dict[str, Any], filename: str, blissdata_version: str) -> dict[str, Any]:
    """NXroot attributes, set when a file is first created."""
    return {"NX_class": "NXroot", "file_time": now_iso(), "file_name": filename,
            "HDF5_Version": h5py.version.hdf5_version, "h5py_version": h5py.version.version,
            "creator": "blissdata", "create_version": blissdata_version,
            "publisher": scan_info.get("publisher", "bliss"),
            "publisher_version": str(scan_info.get("publisher_version", "")),
            "writer": "nxpar"}


def scan_file(scan_info: dict[str, Any]) -> str:
    """The file the scan is written to: the dataset file, or with `separate_scan_files`
    `<dataset dir>/<images_path elements before the first '{'>/bliss_master.h5` (spec §4.1)."""
    filename = scan_info["filename"]
    options = scan_info.get("writer_options") or {}
    images_path = scan_info.get("images_path")
    if not (options.get("separate_scan_files") and isinstance(images_path, str) and images_path):
        return filename
    root = os.path.dirname(filename)
    parts = []
    for part in os.path.relpath(images_path, root).split(os.sep):
        if "{" in part:
            break
        parts.append(part)
    if parts and parts[-1] and os.path.basename(images_path) == parts[-1]:
        parts = parts[:-1]  # the last element is a file name prefix, not a directory
    return os.path.join(root, *parts, "bliss_master.h5")


def grid_shape(scan_info: dict[str, Any]) -> tuple[int, ...]:
    """The nD scan shape (npoints_n, …, npoints_1), or () when the scan is 0D/1D or a dimension
    is unknown (spec §4.6: then treated as 1D)."""
    try:
        ndim = int(scan_info.get("data_dim", 1) or 1)
        dims = [int(scan_info.get(f"npoints{i}") or 0) for i in range(1, ndim + 1)]
    except (TypeError, ValueError):
        return ()
    if ndim <= 1 or any(n <= 0 for n in dims):
        return ()
    return tuple(reversed(dims))


def _subscans(scan_info: dict[str, Any]) -> dict[str, list[str]]:
    devices = scan_info["devices"]
    return {top: [ch for dev in chain.get("devices", []) for ch in devices[dev].get("channels", [])]
            for top, chain in scan_info["acquisition_chain"].items()}


def _scalar(value: Any) -> Any:
    if isinstance(value, (dict,)):
        return str(value)
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return str(value)
    return value


def dict_to_nodes(path: str, d: dict[str, Any], nx_class: str | None = None) -> list[Node]:
    """silx dicttonx conventions: 'name@attr' keys are attributes, dicts are groups (NXcollection)."""
    attrs = {}
    children: list[Node] = []
    for key, value in d.items():
        if key in ("NX_class", "@NX_class"):
            attrs["NX_class"] = value
        elif key.startswith("@"):
            attrs[key[1:]] = value
        elif "@" in key:
            name, attr = key.split("@", 1)
            children.append(Node("attrs", f"{path}/{normalise(name)}", attrs={attr: value}))
        elif isinstance(value, dict):
            children = dict_to_nodes(f"{path}/{normalise(key)}", value) + children
        else:
            children.insert(0, Node("value", f"{path}/{normalise(key)}", _scalar(value), overwrite=True))
    attrs.setdefault("NX_class", nx_class or "NXcollection")
    # attributes on children must come after the children exist
    values = [n for n in children if n.op != "attrs"]
    later = [n for n in children if n.op == "attrs"]
    return [Node("group", path, attrs=attrs)] + values + later
