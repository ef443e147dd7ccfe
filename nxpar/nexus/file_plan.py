"""What the scan driver asks of a file plan (`FilePlan`), and how the plan of a scan is chosen.

Two plans implement it: `plan.ScanPlan` (the NeXus tree derived from scan_info, blisswriter's
layout) and `h5map_plan.H5MapPlan` (the tree the publisher mapped itself, newer blissdata).
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..protocol.steps import ArraySpec, Node
from .lima_plan import LimaMode

if TYPE_CHECKING:
    from ..protocol.options import SaveOptions
    from .scan_info import ScanOptions


class StreamKind(str, enum.Enum):
    """How the driver follows a stream of the scan (the per-kind dispatch is in rank0/)."""

    ARRAY = "array"  # rows read from Redis by the writer ranks
    LIMA = "lima"  # Lima frames left in Lima's files: VDS/external/references at the end
    LIMA_COPY = "lima_copy"  # Lima frames copied from Lima's closed files by the writer ranks
    SCAN = "scan"  # children of a scan sequence: links at the end


class FilePlan(Protocol):
    """Pure logic: everything rank 0 needs to drive the writers for one scan, as Node lists."""

    filename: str  # the file the writers open
    grid: tuple[int, ...]  # the nD scan shape of a mesh (axes averaged at the end), () otherwise
    stream_kinds: tuple[StreamKind, ...]  # the kinds of stream this plan can write

    @property
    def entry_names(self) -> list[str]: ...
    def urls(self) -> list[str]: ...

    # -- opening -----------------------------------------------------------------------------
    def root_attrs(self) -> dict[str, Any]: ...
    def skeleton(self) -> list[Node]: ...
    def master_links(self) -> dict[str, list[Node]]: ...
    def running(self) -> list[Node]: ...

    # -- streams -----------------------------------------------------------------------------
    def wants(self, stream_name: str) -> bool: ...
    def entry_of(self, stream_name: str) -> str: ...  # KeyError naming the stream if it is unknown
    def array_spec(self, stream_name: str, dtype: str, detector_shape: tuple[int, ...]) -> ArraySpec: ...
    def dataset_nodes(self, stream_name: str, measurement: bool = True) -> list[Node]: ...
    def group_node(self, stream_name: str) -> list[Node]: ...
    def lima_mode(self, lima_info: dict[str, Any]) -> LimaMode: ...
    def lima_nodes(self, stream_name: str, refs: list[Any], dtype: str, frame_shape: tuple[int, ...],
                   lima_info: dict[str, Any], edf_blocks: list[tuple[str, int, int]] | None = None
                   ) -> list[Node]: ...
    def sequence_nodes(self, children: list[dict[str, Any]]) -> list[Node]: ...

    # -- closing -----------------------------------------------------------------------------
    def grid_axes(self) -> dict[str, list[str]]: ...
    # written: rows written per stream that has any (plots leave out flat data that does not fit a grid)
    def final_nodes(self, final_info: dict[str, Any], failed: bool, written: Mapping[str, int],
                    axis_values: dict[str, np.ndarray] | None = None) -> list[Node]: ...
    def failed_nodes(self, reason: str) -> list[Node]: ...



class PluginDataset(Protocol):
    """One stream's dataset as the Lima2/Mosca code (driver/plugin_streams.py) places it: a
    `plan.ChannelPlan` (scan_info route) or an `h5map_plan.MappedStream` (the path BLISS mapped)."""

    dim: int  # detector dims (a Lima2 channel's is only known from its stream info)
    dtype: str | None  # as written, remembered for the plots
    detector_shape: tuple[int, ...] | None

    @property
    def dataset_path(self) -> str: ...  # absolute path of the dataset in the scan file

    @property
    def dataset_attrs(self) -> dict[str, Any]: ...  # attributes the publisher asked for (h5map), else {}


@runtime_checkable
class PluginPlan(Protocol):
    """What the Lima2/Mosca code asks of a plan: both `ScanPlan` and `H5MapPlan` answer it, so a
    plugin stream is written the same way on either route, only at the place each plan names."""

    filename: str
    options: "SaveOptions"  # allow_external_hdf5 / copy_non_external (Lima2 copy), mosca_vds
    scan: "ScanOptions"  # npoints and chunk options (Mosca spectrum chunks)

    def channel(self, stream_name: str) -> PluginDataset: ...
    def array_spec(self, stream_name: str, dtype: str, detector_shape: tuple[int, ...]) -> ArraySpec: ...
    def dataset_nodes(self, stream_name: str, measurement: bool = True) -> list[Node]: ...
    def group_node(self, stream_name: str) -> list[Node]: ...  # [] when the plan makes no group (h5map)
