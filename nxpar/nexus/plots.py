"""Plots (docs/interface.md §4.6): blisswriter 2.0.0's `plotselect` NXdata groups, planned at finalisation.

The channels BLISS asks to display (`display_extra`) become NXdata signals, one NXdata per
(scan shape, detector shape), named `plotselect` or, when split, `plotselect_<device type>[i]`
with `plotselect` a link to the default one. Mesh data saved flat is shown as the grid through a
virtual dataset (one mapping per grid row, so that points never received read as the fill value),
with one axis per grid dimension: the motor's positions averaged over the other dimensions, made
linear. Flat data is shown as the grid only when its rows fit it (`fits_grid`): a channel with more
or fewer points than a complete grid is left out of the plot, as blisswriter leaves it ("Cannot
reshape"); an incomplete mesh shows what came. Pure logic: returns `Node`s.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..protocol.steps import Node, NodeOp
from .channel_mapping import ChannelMap, normalise
from .chunking import fill_value

PLOT_NAME = "plotselect"


@dataclass
class Plotted:
    """What the plot needs to know of one channel's dataset (set when the dataset is planned)."""

    fullname: str
    map: ChannelMap
    dim: int = 0  # detector ndim announced in scan_info
    dtype: Optional[str] = None
    detector_shape: Optional[tuple[int, ...]] = None  # None: not known (no dataset planned)
    rows: Optional[int] = None  # rows written (None: not known)

    @property
    def link_name(self) -> str:
        return normalise(self.map.unique_name)

    @property
    def suffix(self) -> str:
        """blisswriter names split NXdata by device type, `unknown<n>D` when there is none."""
        ndet = len(self.detector_shape or ())
        return self.map.device_type or f"unknown{ndet}D"


@dataclass
class Signal:
    item: Plotted
    # as plotted: the grid, or (rows,) for flat data ((0,) when not known): blisswriter groups by the
    # dataset's shape, so channels of different lengths (an aborted scan) get NXdata of their own
    scan_shape: tuple[int, ...]
    reshaped: bool  # flat data shown as the grid (a virtual dataset)


def wanted_channels(info: dict[str, Any]) -> list[str]:
    """`displayed_channels` (plotinit) wins over `plotselect` (as in blisswriter); none → no plot."""
    extra = info.get("display_extra") or {}
    items = extra.get("displayed_channels")
    if items is None:
        items = extra.get("plotselect")
    return [str(i) for i in items or []]


def name_matches(fullname: str, wanted: str) -> bool:
    """blisswriter's `_matching_fullname`: parts (split on '.'/':') compared from the end with endswith."""
    a, b = re.split(r"[.:]", fullname), re.split(r"[.:]", wanted)
    return all(x.endswith(y) for x, y in zip(reversed(a), reversed(b)))


def select_signals(wanted: list[str], items: list[Plotted]) -> list[Plotted]:
    """For each wanted name the first detector dataset (sorted by link name) that matches."""
    detectors = sorted((i for i in items if not i.map.is_positioner), key=lambda i: i.link_name)
    selected: list[Plotted] = []
    for name in wanted:
        for item in detectors:
            if name_matches(item.fullname, name):
                if item not in selected:
                    selected.append(item)
                break
    return selected


def plot_grid(grid: tuple[int, ...], slow_axis_values: Optional[np.ndarray]) -> tuple[int, ...]:
    """The planned grid, its slow axis grown when more points arrived (the averaged slow motor is longer)."""
    if not grid:
        return ()
    slow = grid[0] if slow_axis_values is None else max(grid[0], len(slow_axis_values))
    return (slow,) + tuple(grid[1:])


def linear_axis(values: np.ndarray) -> np.ndarray:
    """blisswriter makes each averaged grid axis linear (a fit through the finite values)."""
    values = np.asarray(values, dtype=float)
    x = np.arange(values.size)
    mask = np.isfinite(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m, b = np.polyfit(x[mask], values[mask], 1)
        except Exception:
            return np.linspace(np.nanmin(values), np.nanmax(values), values.size)
    return m * x + b


def interpretation(scan_ndim: int, detector_ndim: int) -> Optional[str]:
    """blisswriter's `nxDatasetInterpretation` for a dataset shown with its scan shape."""
    if detector_ndim == 0:
        return {2: "image", 3: "vertex"}.get(scan_ndim)
    return {1: "spectrum", 2: "image", 3: "vertex"}.get(detector_ndim)


def reshaped_vds(path: str, source: str, item: Plotted, grid: tuple[int, ...]) -> Node:
    """A virtual dataset showing the flat dataset `source` (points in C order) as `grid`.

    One mapping per grid row: a row the source does not (yet) have reads as the fill value.
    """
    det = tuple(item.detector_shape or ())
    fast, zeros = grid[-1], (0,) * len(det)
    sources = []
    for row in range(math.prod(grid[:-1])):
        index = tuple(int(i) for i in np.unravel_index(row, grid[:-1]))
        vsel = {"start": index + (0,) + zeros, "count": (1,) * len(index) + (fast,) + det}
        ssel = {"start": (row * fast,) + zeros, "count": (fast,) + det}
        sources.append((".", source, vsel, ssel))
    spec = {"shape": tuple(grid) + det, "dtype": item.dtype, "fillvalue": fill_value(item.dtype),
            "sources": sources}
    attrs = {}
    kind = interpretation(len(grid), len(det))
    if kind:
        attrs["interpretation"] = kind
    return Node(NodeOp.VDS_MAP, path, spec, attrs=attrs)


@dataclass
class PlotGroup:
    """Signals of one NXdata: same (plotted scan shape, detector shape)."""

    scan_shape: tuple[int, ...]
    detector_shape: tuple[int, ...]
    signals: list[Signal]

    @property
    def sortkey(self) -> tuple[str, ...]:
        return tuple(sorted(s.item.link_name for s in self.signals))

    @property
    def ndim(self) -> int:
        return len(self.scan_shape) + len(self.detector_shape)


def known_shape(item: Plotted) -> bool:
    return item.detector_shape is not None and all(n > 0 for n in item.detector_shape)


def fits_grid(rows: Optional[int], grid: tuple[int, ...], motor_rows: Optional[int]) -> bool:
    """Whether flat data of `rows` points can be shown as `grid` (the plotted grid, slow axis grown).

    blisswriter 2.0.0 (writer/plots.py, NXdataWriter.add_signal, lines 218-234) reshapes a flat
    dataset to `grid_shape` (the scan's grid + detector shape, writer/datasets.py:310) only when the
    sizes agree, else logs "Cannot reshape" and leaves the channel out of the plot: a channel with
    more or fewer points than the grid (BLISS's FakeController publishes npoints + 1) is not shown.
    nxpar also plots an incomplete mesh (its motors, `motor_rows`, short of the grid): there a channel
    is shown, the points that never came read as the fill value, unless it has more points than the grid.
    Unknown rows: shown.
    """
    if rows is None:
        return True
    size = math.prod(grid)
    incomplete = motor_rows is not None and motor_rows < size
    return rows == size or (incomplete and rows < size)


def group_signals(signals: list[Plotted], grid: tuple[int, ...], keepshape: bool,
                  motor_rows: Optional[int] = None) -> list[PlotGroup]:
    """blisswriter's NXplotID grouping (writer/plots.py:238-263: name, scan shape, detector shape of the
    signal as plotted); flat data of a grid is reshaped when its frame shape is fixed and its rows fit
    the grid (else it is left out)."""
    groups: dict[tuple[Any, ...], PlotGroup] = {}
    for item in signals:
        det = tuple(item.detector_shape) if item.detector_shape is not None else (-1,) * item.dim
        as_grid = bool(grid) and (keepshape or known_shape(item))
        flat = (item.rows if item.rows is not None else 0,)
        signal = Signal(item, tuple(grid) if as_grid else flat, reshaped=as_grid and not keepshape)
        if signal.reshaped and not fits_grid(item.rows, grid, motor_rows):
            continue
        key = (signal.scan_shape, det)
        groups.setdefault(key, PlotGroup(signal.scan_shape, det, [])).signals.append(signal)
    return sorted(groups.values(), key=lambda g: g.sortkey)


def group_names(groups: list[PlotGroup]) -> list[str]:
    """`plotselect`, or `plotselect_<suffix>` when split, with an index when suffixes repeat."""
    suffixes = [g.signals[0].item.suffix for g in groups]
    if len(groups) == 1:
        return [PLOT_NAME]
    indexed = len(set(suffixes)) != len(suffixes)
    return [f"{PLOT_NAME}_{s}{i if indexed else ''}" for i, s in enumerate(suffixes, 1)]


def axes_nodes(group: PlotGroup, path: str, masters: dict[int, Plotted], entry: str,
               axis_values: dict[str, np.ndarray]) -> tuple[list[str], list[Node]]:
    """blisswriter's `add_axes`: master positioners (averaged and linear for grids), then `datadim<i>`."""
    scan_ndim, det = len(group.scan_shape), group.detector_shape
    axes: list[tuple[str, Node]] = []
    flattened = scan_ndim != len(masters)
    if flattened and det:
        return [], []
    keys = sorted(masters, reverse=not flattened)  # grid: fast axis last
    if scan_ndim > 1:
        if all(masters[k].fullname in axis_values for k in keys):
            for k in keys:
                name = masters[k].link_name
                axes.append((name, Node(NodeOp.VALUE, f"{path}/{name}", linear_axis(axis_values[masters[k].fullname]),
                                        overwrite=True)))
    else:
        for k in keys:
            name = masters[k].link_name
            axes.append((name, Node(NodeOp.SOFTLINK, f"{path}/{name}", target=f"/{entry}/{masters[k].map.dataset}",
                                    overwrite=True)))
    if group.ndim - len(axes) == len(det) and all(n > 0 for n in det):
        axes += [(f"datadim{i}", Node(NodeOp.VALUE, f"{path}/datadim{i}", np.arange(n), overwrite=True))
                 for i, n in enumerate(det)]
    return [name for name, _ in axes], [node for _, node in axes]


def plot_nodes(entry: str, items: list[Plotted], wanted: list[str], grid: tuple[int, ...], keepshape: bool,
               axis_values: dict[str, np.ndarray], grid_axes: list[str]) -> list[Node]:
    """The NXdata groups of one entry and its `default` (the last one, as blisswriter picks it).

    items: the entry's channels that have data; grid_axes: the grid's motors, slow first.
    """
    signals = select_signals(wanted, items)
    slow = axis_values.get(grid_axes[0]) if grid_axes else None
    grid = plot_grid(grid, slow)
    motor_rows = max((i.rows for i in items if i.fullname in grid_axes and i.rows is not None), default=None)
    groups = group_signals(signals, grid, keepshape, motor_rows)
    if not groups:
        return []
    masters = {i.map.master_index: i for i in items
               if i.map.is_positioner and i.map.master_index >= 0 and i.map.data_type == "principal"}
    e = f"/{entry}"
    nodes: list[Node] = []
    names = group_names(groups)
    for group, name in zip(groups, names):
        p = f"{e}/{name}"
        links = list(dict.fromkeys(s.item.link_name for s in group.signals))
        attrs: dict[str, Any] = {"NX_class": "NXdata", "signal": links[0]}
        if len(links) > 1:
            attrs["auxiliary_signals"] = links[1:]
        axis_names, axis_nodes = axes_nodes(group, p, masters, entry, axis_values)
        if axis_names:
            attrs["axes"] = axis_names
        nodes.append(Node(NodeOp.GROUP, p, attrs=attrs))
        for s in group.signals:
            target = f"{e}/{s.item.map.dataset}"
            if s.reshaped:
                nodes.append(reshaped_vds(f"{p}/{s.item.link_name}", target, s.item, group.scan_shape))
            else:
                nodes.append(Node(NodeOp.SOFTLINK, f"{p}/{s.item.link_name}", target=target, overwrite=True))
        nodes += axis_nodes
    if len(groups) > 1:
        nodes.append(Node(NodeOp.SOFTLINK, f"{e}/{PLOT_NAME}", target=f"{e}/{names[-1]}", overwrite=True))
    nodes.append(Node(NodeOp.ATTRS, e, attrs={"default": PLOT_NAME}))
    return nodes
