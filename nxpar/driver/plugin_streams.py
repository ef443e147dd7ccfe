"""RANK 0 ONLY: Lima2 and Mosca channels (blissdata plugin streams) of one scan.

Followed from their *raw* Redis events, so they are written the same way whether the plugin is
installed, cannot reach the Lima2 conductor (`BrokenPluginStream`) or is missing
(`MissingPluginStream`): the last event of a channel counts. Frames and spectra are read from the
detectors' files (`nxpar.sources.detector_files`, `nxpar.sources.lima2_receivers`) or the Mosca server
by the writer ranks, or linked; a channel that cannot be written gets a warning (log, scan_info,
scan_progress), never a scan FAULT. This module owns what both plugins share: classification,
the one pipelined round trip for the last events, the links re-declared as they grow, the
warnings, finalisation, the detector files checked against the allowed roots before they are read or
linked (path_checks.py: a channel whose files are outside is refused, a warning); what each plugin's
events, files and datasets are is in lima2_channels.py and mosca_channels.py (`PluginPart`), its channel
in plugin_channel.py.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from ..nexus.file_plan import PluginPlan
from ..nexus.plugin_plan import COPIED_KINDS, PLUGIN_KINDS, PLUGINS, PluginMode
from ..protocol import steps as st
from .lima2_channels import Lima2Channels
from .mosca_channels import MoscaChannels
from .path_checks import DetectorFiles, policy_of
from .plugin_channel import PluginChannel, PluginPart

if TYPE_CHECKING:
    from .row_writes import StreamProgress
    from .scan_source import ScanSource, StreamDescription
    from .writer_channel import WriterChannel

log = logging.getLogger("nxpar.scan")

RELINK_PERIOD_S = 1.0  # a growing Lima2/Mosca VDS is re-declared at most this often


class PluginStreams:
    """The plugin channels of one ScanDriver (hooks called from its StreamFollower and finalisation).

    `warn(text)` adds a text to the scan writer's warning at once (scan_info / scan_progress)."""

    def __init__(self, source: "ScanSource", channel: "WriterChannel", warn: Callable[[str], None]) -> None:
        self.scan_source = source
        self.channel = channel
        self.add_warning = warn
        self.channels: dict[str, PluginChannel] = {}
        self.warnings: dict[str, str] = {}
        self.lima2 = Lima2Channels(source, self._warn)
        self.mosca = MoscaChannels(source, self._warn)
        self.parts: dict[str, PluginPart] = {"lima2": self.lima2, "mosca": self.mosca}
        self.files = DetectorFiles(policy_of(None))  # the plan's allowed roots (StreamFollower.classify)

    def __contains__(self, name: str) -> bool:
        return name in self.channels

    @property
    def warning(self) -> str:
        return "; ".join(self.warnings.values())

    def _warn(self, name: str, text: str) -> None:
        if self.warnings.get(name) != text:
            self.warnings[name] = text
            log.warning("scan %s: %s", self.scan_source.info.get("name"), text)
            self.add_warning(text)

    def refuse(self, p: "StreamProgress", reason: str) -> None:
        """A channel whose files are outside the allowed roots: nothing more of it is read or linked."""
        p.given_up = True
        self._warn(p.name, f"{p.name}: {reason}: not read or linked" + (f" from point {p.available} on"
                                                                            if p.available else ""))

    def _files(self, ch: PluginChannel, stop: int) -> list[str]:
        """The files the channel's points [0, stop) are read from or linked to now (none: Mosca server)."""
        if ch.mode in (PluginMode.GROUP_ONLY, PluginMode.MOSCA_SERVER):
            return []
        return self.lima2.files(ch, stop) if ch.plugin == "lima2" else self.mosca.files(ch, stop)

    # -- classification (StreamFollower.classify) ------------------------------------------------------
    def classify(self, d: "StreamDescription", plan: Any) -> str | None:
        """The StreamProgress kind of a Lima2/Mosca stream (None: not a plugin stream of ours)."""
        name, plugin, info = d.name, d.plugin, dict(d.info)
        if plugin not in PLUGINS or not isinstance(plan, PluginPlan):  # ScanPlan or H5MapPlan
            return None
        if d.broken:
            self._warn(name, f"{name}: blissdata plugin '{plugin}' {d.broken}; written from its events and files only")
        try:
            ch = self.parts[plugin].channel(name, info, plan)
        except (KeyError, TypeError, ValueError) as e:  # malformed stream info: this channel only
            ch = PluginChannel(name, plugin, PluginMode.GROUP_ONLY, info)
            self._warn(name, f"{name}: unusable {plugin} stream info ({type(e).__name__}: {e}): not written")
        refused = self.files.refusal(self._files(ch, 1))  # where the detector saves
        if refused:
            ch = PluginChannel(name, plugin, PluginMode.GROUP_ONLY, info)
            self._warn(name, f"{name}: {plugin} files: {refused}: not read or linked")
        self.channels[name] = ch
        return ch.mode.value

    # -- progress (StreamFollower.refresh_lengths) -----------------------------------------------------
    def refresh(self, streams: dict[str, "StreamProgress"]) -> None:
        """One pipelined round trip: the last event (and seal) of every unsealed plugin stream."""
        names = [n for n in self.channels if not streams[n].sealed and not streams[n].given_up]
        if not names:
            return
        self.mosca.new_round()
        for n, (data, sealed) in self.scan_source.last_events(names).items():
            ch = self.channels[n]
            if data:
                try:
                    self.parts[ch.plugin].event(ch, self.scan_source.decode_last(n, data))
                except (KeyError, TypeError, ValueError, IndexError) as e:
                    self._warn(n, f"{n}: unreadable {ch.plugin} event ({type(e).__name__}: {e})")
            self._progress(ch, streams[n], sealed)

    def _progress(self, ch: PluginChannel, p: "StreamProgress", sealed: bool) -> None:
        p.reported = ch.reported
        if ch.mode == PluginMode.GROUP_ONLY:
            p.available = ch.reported
        else:
            available = self.parts[ch.plugin].available(ch, sealed)
            refused = self.files.refusal(self._files(ch, available)) if available else ""
            if refused:
                self.refuse(p, f"{ch.plugin} files: {refused}")
                return
            p.available = available
        if not ch.mode.copied:  # linked, or nothing to write: written once available
            p.written = p.submitted = p.available
        p.sealed = sealed

    # -- links during the scan (StreamFollower.send_due) -------------------------------------------
    def link(self, plan: PluginPlan, streams: dict[str, "StreamProgress"]) -> bool:
        """Groups, and the VDS of linked channels re-declared as their count grows."""
        nodes: list[st.Node] = []
        now = time.monotonic()
        for ch in self.channels.values():
            p = streams[ch.name]
            if ch.mode.copied or not p.available or p.given_up or _link_state(ch, p) == ch.linked_state:
                continue
            if not p.sealed and now - ch.linked_at < RELINK_PERIOD_S and ch.linked_count >= 0:
                continue
            nodes += self._link_nodes(plan, ch, p, first=ch.linked_count < 0)
            ch.linked_count, ch.linked_at, ch.linked_state = p.available, now, _link_state(ch, p)
            p.linked = True
        if nodes:
            self.channel.call(st.Tree(self.scan_source.key, nodes))
        return bool(nodes)

    def _link_nodes(self, plan: PluginPlan, ch: PluginChannel, p: "StreamProgress", first: bool) -> list[st.Node]:
        if ch.mode == PluginMode.GROUP_ONLY:
            return plan.group_node(ch.name) if first else []
        c = plan.channel(ch.name)
        node = self.parts[ch.plugin].vds_node(plan, ch, p, c)
        node.attrs.update(c.dataset_attrs)  # h5map: the attributes BLISS mapped on the dataset
        return (plan.dataset_nodes(ch.name) + [node]) if first else [node]

    # -- copies (StreamFollower._submit_rows) ----------------------------------------------------------
    def spec(self, plan: PluginPlan, name: str) -> st.ArraySpec:
        ch = self.channels[name]
        return self.parts[ch.plugin].spec(plan, ch)

    def source(self, p: "StreamProgress", stop: int) -> st.RowsSource:
        ch = self.channels[p.name]
        return self.parts[ch.plugin].source(ch, p, stop)

    def write_failed(self, name: str, start: int, stop: int, reason: str) -> None:
        """The writer ranks could not read points [start, stop) of a copied channel (RowWrites has
        given it up): a warning, the points before stay written, the scan goes on."""
        self._warn(name, f"{name}: points {start}..{stop - 1} could not be read by the writers ({reason}): "
                   f"points from {start} on not written")

    # -- finalisation (ScanDriver._finalise) ------------------------------------------------------
    def final_nodes(self, plan: PluginPlan, streams: dict[str, "StreamProgress"]) -> list[st.Node]:
        """The last VDS of each linked channel; a warning for copies that fell short."""
        nodes: list[st.Node] = []
        for ch in self.channels.values():
            p = streams[ch.name]
            if not ch.mode.copied and p.available and not p.given_up and _link_state(ch, p) != ch.linked_state:
                nodes += self._link_nodes(plan, ch, p, first=ch.linked_count < 0)
                ch.linked_count, ch.linked_state = p.available, _link_state(ch, p)
            if ch.mode.copied and p.written < ch.reported and ch.name not in self.warnings:
                self._warn(ch.name, f"{ch.name}: {ch.reported} reported, {p.written} written")
        return nodes


def _link_state(ch: PluginChannel, p: "StreamProgress") -> tuple:
    """What a channel's VDS is made of: re-declared when this changes (Lima2: frames, master or
    receivers, receivers and frames per file learnt so far)."""
    rcv = ch.receivers
    if ch.mode != PluginMode.LIMA2_LINK or rcv is None:
        return (p.available,)
    return (p.available, ch.master_ready, rcv.receivers, rcv.per_file)


def is_plugin_kind(kind: str) -> bool:
    return kind in PLUGIN_KINDS


__all__ = ["COPIED_KINDS", "PluginStreams", "is_plugin_kind"]
