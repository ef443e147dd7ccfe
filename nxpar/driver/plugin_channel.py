"""RANK 0 ONLY: one Lima2 or Mosca channel (blissdata plugin stream) of a scan, as plugin_streams.py
follows it (`PluginChannel`: what its events said, what nxpar does with it), and what the part of
each plugin (lima2_channels.py, mosca_channels.py) answers for its channels (`PluginPart`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..nexus.file_plan import PluginDataset, PluginPlan
from ..nexus.plugin_plan import Lima2Info, PluginMode
from ..protocol import steps as st
from ..sources.detector_files import MoscaSaving
from ..sources.lima2_receivers import Lima2Receivers

if TYPE_CHECKING:
    from .row_writes import StreamProgress

MASTER_CHECK_PERIOD_S = 1.0  # Lima2: how often rank 0 looks at the master and receivers' files (Mosca: 4 times as often)

Warn = Callable[[str, str], None]  # warn(channel name, text): the channel's warning (log, scan_info, scan_progress)


@dataclass
class PluginChannel:
    """One plugin stream: what its events said, and what nxpar does with it."""

    name: str
    plugin: str
    mode: PluginMode
    info: dict[str, Any]
    lima2: Lima2Info | None = None
    mosca: MoscaSaving | None = None
    receivers: Lima2Receivers | None = None  # Lima2: the receivers' files, until the master holds the frames
    master_ready: bool = False  # Lima2: the master file holds every reported frame
    reported: int = 0  # frames (Lima2) / points read (Mosca) according to the last event
    saved: int = 0  # Mosca: points saved according to the last event
    linked_count: int = -1  # points in the VDS declared last
    linked_at: float = 0.0
    linked_state: tuple = ()  # Lima2: what the VDS declared last was made of
    checked_at: float = 0.0
    settled: bool = False  # Lima2, sealed: the files were looked at for the last time
    complete: bool = False  # Lima2, settled: the master or the receivers' files hold every reported frame
    copyable: int = 0  # Lima2 copies: frames that can be copied
    order_checked: bool = False  # Lima2 copies: the master file was compared with the receivers' placement
    closed: int = 0  # Mosca files: points in files Mosca closed


class PluginPart(Protocol):
    """What one plugin's part (Lima2 or Mosca) answers for its channels; a GROUP_ONLY channel is
    never asked for more than its events."""

    def channel(self, name: str, info: dict[str, Any], plan: PluginPlan) -> PluginChannel:
        """The channel of a stream and its mode (KeyError, TypeError, ValueError: malformed info)."""
        ...

    def event(self, ch: PluginChannel, last: Any) -> None:
        """The decoded last event of the stream."""
        ...

    def available(self, ch: PluginChannel, sealed: bool) -> int:
        """Points that can be linked or copied now."""
        ...

    def vds_node(self, plan: PluginPlan, ch: PluginChannel, p: "StreamProgress", c: PluginDataset) -> st.Node:
        """The VDS of a linked channel over its `p.available` points (sets `c`'s dtype and shape)."""
        ...

    def spec(self, plan: PluginPlan, ch: PluginChannel) -> st.ArraySpec:
        """The dataset of a copied channel."""
        ...

    def source(self, ch: PluginChannel, p: "StreamProgress", stop: int) -> st.RowsSource:
        """Where the writer ranks read points [p.submitted, stop) of a copied channel."""
        ...
