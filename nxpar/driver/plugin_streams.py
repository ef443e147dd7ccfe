"""RANK 0 ONLY: Lima2 and Mosca channels (blissdata plugin streams) of one scan.

Followed from their *raw* Redis events, so they are written the same way whether the plugin is
installed, cannot reach the Lima2 conductor (`BrokenPluginStream`) or is missing
(`MissingPluginStream`): Lima2 events are uint32 progress counts (the last one counts), Mosca
events JSON `{last_read_index, last_saved_index}` (the last one counts). Frames and spectra are
read from the detectors' files (`nxpar.sources.detector_files`, `nxpar.sources.lima2_receivers`) by the writer
ranks, or linked; a channel that cannot be written gets a warning (log, scan_info,
scan_progress), never a scan FAULT. Lima2 writes its master file only at the end: until then
frames are linked / copied straight from the receivers' files.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..nexus.file_plan import PluginPlan
from ..nexus.plugin_plan import (COPIED_KINDS, PLUGIN_KINDS, PLUGINS, Lima2Info, PluginMode, lima2_mode,
                                  lima2_receivers_vds_node, lima2_vds_node, mosca_vds_node, spectrum_chunks)
from ..protocol import steps as st
from ..sources import mosca_server
from ..sources.detector_files import WAIT_S, MoscaSaving, lima2_master_ready
from ..sources.lima2_receivers import Lima2Receivers

if TYPE_CHECKING:
    from .row_writes import StreamProgress
    from .scan_source import ScanSource, StreamDescription
    from .writer_channel import WriterChannel

log = logging.getLogger("nxpar.scan")

RELINK_PERIOD_S = 1.0  # a growing Lima2/Mosca VDS is re-declared at most this often
MASTER_CHECK_PERIOD_S = 1.0  # Lima2: how often rank 0 looks at the master and receivers' files
SERVER_BACKOFF_S = 5.0  # a Mosca server that could not be asked is not asked again for this long


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


@dataclass
class ServerPoll:
    """What one Mosca server said last (all the channels it serves share it)."""

    points: int = 0
    asked_round: int = -1  # the PluginStreams.refresh round it was asked in
    asked_at: float = float("-inf")
    failed_at: float = float("-inf")
    error: str = ""  # why the last call failed ("" after an answer)


class PluginStreams:
    """The plugin channels of one ScanDriver (hooks called from its read loop and finalisation).

    `warn(text)` adds a text to the scan writer's warning at once (scan_info / scan_progress)."""

    def __init__(self, source: "ScanSource", channel: "WriterChannel", warn: Callable[[str], None]) -> None:
        self.scan_source = source
        self.channel = channel
        self.add_warning = warn
        self.channels: dict[str, PluginChannel] = {}
        self.warnings: dict[str, str] = {}
        self.servers: dict[str, ServerPoll] = {}  # Mosca server url → its last answer
        self.round = 0  # refresh rounds: a Mosca server is asked at most once a round
        self.sealed_deadline: float | None = None  # Lima2: the one wait for master files after the seal

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

    # -- classification (ScanDriver._classify) --------------------------------------------------------
    def classify(self, d: "StreamDescription", plan: Any) -> str | None:
        """The StreamProgress kind of a Lima2/Mosca stream (None: not a plugin stream of ours)."""
        name, plugin, info = d.name, d.plugin, dict(d.info)
        if plugin not in PLUGINS or not isinstance(plan, PluginPlan):  # ScanPlan or H5MapPlan
            return None
        if d.broken:
            self._warn(name, f"{name}: blissdata plugin '{plugin}' {d.broken}; written from its events and files only")
        try:
            ch = self._lima2(name, info, plan) if plugin == "lima2" else self._mosca(name, info, plan)
        except (KeyError, TypeError, ValueError) as e:  # malformed stream info: this channel only
            ch = PluginChannel(name, plugin, PluginMode.GROUP_ONLY, info)
            self._warn(name, f"{name}: unusable {plugin} stream info ({type(e).__name__}: {e}): not written")
        self.channels[name] = ch
        return ch.mode.value

    def _lima2(self, name: str, info: dict[str, Any], plan: PluginPlan) -> PluginChannel:
        l2 = Lima2Info.from_info(info)
        mode = lima2_mode(l2, plan.options.allow_external_hdf5, plan.options.copy_non_external)
        c = plan.channel(name)
        c.dim = len(l2.shape)  # BLISS recorded the channel (dim 3) before Lima2 knew its shape
        if mode == PluginMode.GROUP_ONLY and not plan.group_node(name):  # an h5map path left empty
            self._warn(name, f"{name}: not saved by Lima2 (no master file): nothing written at {c.dataset_path}")
        elif mode == PluginMode.GROUP_ONLY:
            log.info("scan %s: %s is not saved by Lima2 (no master file): detector group only",
                     self.scan_source.info.get("name"), name)
        receivers = Lima2Receivers.from_master(l2.master, l2.shape) if l2.master else None
        return PluginChannel(name, "lima2", mode, info, lima2=l2, receivers=receivers)

    def _mosca(self, name: str, info: dict[str, Any], plan: PluginPlan) -> PluginChannel:
        saving = MoscaSaving.from_info(info)
        if saving is None and (info.get("mosca_info") or {}).get("server_url") and mosca_server.client_installed():
            mode = PluginMode.MOSCA_SERVER
            log.info("scan %s: Mosca does not save %s: spectra read from the Mosca server %s",
                     self.scan_source.info.get("name"), name, info["mosca_info"]["server_url"])
        elif saving is None:
            mode = PluginMode.GROUP_ONLY
            self._warn(name, f"{name}: Mosca does not save these spectra and mosca-client is not installed "
                       "(or no server is named): not written")
        else:
            mode = PluginMode.MOSCA_VDS if plan.options.mosca_vds else PluginMode.MOSCA_COPY
        return PluginChannel(name, "mosca", mode, info, mosca=saving)

    # -- progress (ScanDriver._refresh_lengths) ------------------------------------------------
    def refresh(self, streams: dict[str, "StreamProgress"]) -> None:
        """One pipelined round trip: the last event (and seal) of every unsealed plugin stream."""
        names = [n for n in self.channels if not streams[n].sealed and not streams[n].given_up]
        if not names:
            return
        self.round += 1
        for n, (data, sealed) in self.scan_source.last_events(names).items():
            if data:
                try:
                    self._event(self.channels[n], self.scan_source.decode_last(n, data))
                except (KeyError, TypeError, ValueError, IndexError) as e:
                    self._warn(n, f"{n}: unreadable {self.channels[n].plugin} event ({type(e).__name__}: {e})")
            self._progress(self.channels[n], streams[n], sealed)

    @staticmethod
    def _event(ch: PluginChannel, last: Any) -> None:
        if ch.plugin == "lima2":
            ch.reported = max(ch.reported, int(last))
        else:
            ch.reported = max(ch.reported, int(last["last_read_index"]) + 1)
            ch.saved = max(ch.saved, int(last["last_saved_index"]) + 1)

    def _progress(self, ch: PluginChannel, p: "StreamProgress", sealed: bool) -> None:
        p.reported = ch.reported
        if ch.mode == PluginMode.LIMA2_LINK:
            self._lima2_files(ch, sealed)
        if ch.mode in (PluginMode.LIMA2_LINK, PluginMode.GROUP_ONLY):
            p.available = p.written = p.submitted = ch.reported
        elif ch.mode == PluginMode.LIMA2_COPY:
            p.available = self._lima2_copyable(ch, sealed)
        elif ch.mode == PluginMode.MOSCA_SERVER:
            p.available = self._mosca_served(ch, sealed)
        else:
            p.available = self._mosca_saved(ch, sealed)
            if ch.mode == PluginMode.MOSCA_VDS:
                p.written = p.submitted = p.available
        p.sealed = sealed

    def _lima2_copyable(self, ch: PluginChannel, sealed: bool) -> int:
        """Frames in complete receivers' files during the scan; all reported frames once the master
        or the receivers' files hold them after the end. A placement the disk contradicts after
        copies began stops the copies until the master file comes."""
        self._lima2_files(ch, sealed)
        rcv = ch.receivers
        if ch.master_ready or ch.complete:
            ch.copyable = ch.reported
        elif rcv is not None and rcv.broken:
            self._warn(ch.name, f"{ch.name}: {rcv.broken}: the first {ch.copyable} frames, copied during the scan, "
                       "may be out of order; the others are copied from the Lima2 master file at the end")
        elif rcv is not None:
            ch.copyable = max(ch.copyable, min(rcv.closed_frames(), ch.reported))
        if ch.master_ready and rcv is not None and rcv.fixed and not ch.order_checked:
            self._check_round_robin(ch, sealed)
        return ch.copyable

    def _lima2_files(self, ch: PluginChannel, sealed: bool) -> None:
        """Look at the master and receivers' files (at most every second during the scan). Once
        sealed, wait for the master file until WAIT_S after the first seal of the scan (BLISS seals
        the stream after the conductor closed the pipeline, which writes the master: it is normally
        there at once); without it the receivers' files if they hold every reported frame, else a
        warning."""
        assert ch.lima2 is not None and ch.lima2.master is not None
        now = time.monotonic()
        if ch.master_ready or ch.settled or not sealed and now - ch.checked_at < MASTER_CHECK_PERIOD_S:
            return
        if sealed and not ch.reported:  # no frame: nothing to wait for
            ch.settled = ch.complete = True
            return
        if sealed and self.sealed_deadline is None:
            self.sealed_deadline = now + WAIT_S
        while True:
            ch.checked_at = time.monotonic()
            ch.master_ready = bool(ch.reported) and lima2_master_ready(ch.lima2.master, ch.reported)
            if ch.receivers is not None and not ch.master_ready:
                ch.receivers.look()
            if not sealed:
                return
            assert self.sealed_deadline is not None
            if ch.master_ready or time.monotonic() > self.sealed_deadline:
                ch.settled = True
                ch.complete = ch.master_ready or ch.receivers is not None and ch.receivers.frames_in_files(ch.reported)
                if not ch.complete:
                    self._warn(ch.name, f"{ch.name}: neither the Lima2 master file {ch.lima2.master[0]} nor the "
                               f"receivers' files hold the {ch.reported} frames reported (waited {WAIT_S:g} s)")
                return
            time.sleep(0.2)

    def _mosca_saved(self, ch: PluginChannel, sealed: bool) -> int:
        """Points in files Mosca closed (the next one exists); all of them once sealed. The events'
        saved count is not trusted during the scan: the file it points into may still be open."""
        assert ch.mosca is not None
        if sealed:
            n = ch.mosca.saved_points(ch.reported)
            if n < ch.reported:
                self._warn(ch.name, f"{ch.name}: Mosca read {ch.reported} points but its files hold {n}: "
                           f"the missing spectra are not written")
            return n
        now = time.monotonic()
        if now - ch.checked_at >= MASTER_CHECK_PERIOD_S / 4:
            ch.checked_at = now
            ch.closed = ch.mosca.closed_points(ch.reported)
        return min(ch.closed, ch.reported)

    def _check_round_robin(self, ch: PluginChannel, sealed: bool) -> None:
        """Frames copied from the receivers' files were placed by Lima2's round robin in receiver
        order, with the receivers and frames per file fixed at the first copy: the master file,
        which knows the real placement, must agree (else a warning: they may be out of order, e.g.
        a detector that dispatches frames to receivers dynamically). A master file that cannot be
        read yet is asked again at the next look."""
        assert ch.receivers is not None and ch.lima2 is not None and ch.lima2.master is not None
        agrees = ch.receivers.master_agrees(ch.lima2.master[0])
        ch.order_checked = agrees is not None or sealed
        if agrees is None and sealed:
            log.info("scan %s: %s: the Lima2 master file %s cannot be read: the placement of the frames copied "
                     "during the scan was not checked", self.scan_source.info.get("name"), ch.name, ch.lima2.master[0])
        elif agrees is False:
            self._warn(ch.name, f"{ch.name}: the Lima2 master file places frames otherwise than the round robin "
                       f"assumed while copying frames from the receivers' files: they may be out of order")

    def _mosca_served(self, ch: PluginChannel, sealed: bool) -> int:
        """Points the Mosca server holds: each server asked at most once a refresh round (its
        channels share the answer), at most 4 times a second, once more at the end; after a failure
        not again for SERVER_BACKOFF_S. A server that cannot be asked is a warning, the points it
        served so far stay written."""
        m = ch.info["mosca_info"]
        url = str(m["server_url"])
        poll = self.servers.setdefault(url, ServerPoll())
        now = time.monotonic()
        due = sealed or now - poll.asked_at >= MASTER_CHECK_PERIOD_S / 4
        if poll.asked_round != self.round and due and now - poll.failed_at >= SERVER_BACKOFF_S:
            poll.asked_round, poll.asked_at = self.round, now
            try:
                poll.points = max(poll.points, mosca_server.available_points(url, self._acquisition(ch)))
                poll.error = ""
            except Exception as e:  # DevFailed and whatever the client raises: this server only
                log.info("Mosca server %s: %s", url, e)
                poll.failed_at, poll.error = time.monotonic(), type(e).__name__
        if poll.error:
            self._warn(ch.name, f"{ch.name}: the Mosca server {url} cannot be read "
                       f"({poll.error}): spectra from there on not written")
        return min(poll.points, ch.reported)

    def _acquisition(self, ch: PluginChannel) -> mosca_server.Acquisition:
        return mosca_server.Acquisition(self.scan_source.key, ch.info["mosca_info"].get("acq_id"))

    # -- links during the scan (ScanDriver._stream) ------------------------------------------------
    def link(self, plan: PluginPlan, streams: dict[str, "StreamProgress"]) -> bool:
        """Groups, and the VDS of linked channels re-declared as their count grows."""
        nodes: list[st.Node] = []
        now = time.monotonic()
        for ch in self.channels.values():
            p = streams[ch.name]
            if ch.mode.copied or not p.available or _link_state(ch, p) == ch.linked_state:
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
        path = c.dataset_path
        if ch.mode == PluginMode.LIMA2_LINK:
            assert ch.lima2 is not None
            c.dtype, c.detector_shape = ch.lima2.dtype, ch.lima2.shape
            rcv = ch.receivers
            if ch.master_ready or rcv is None or not rcv.receivers:
                node = lima2_vds_node(path, plan.filename, ch.lima2, p.available)
            else:  # the master file is written at the end: the receivers' files meanwhile
                node = lima2_receivers_vds_node(path, plan.filename, ch.lima2, p.available, rcv.pieces(0, p.available))
        else:
            assert ch.mosca is not None
            shape = tuple(int(n) for n in ch.info["shape"])
            c.dtype, c.detector_shape = str(ch.info["dtype"]), shape
            node = mosca_vds_node(path, plan.filename, ch.mosca.runs(0, p.available), c.dtype, shape[0],
                                  ch.mosca.points_per_file)
        node.attrs.update(c.dataset_attrs)  # h5map: the attributes BLISS mapped on the dataset
        return (plan.dataset_nodes(ch.name) + [node]) if first else [node]

    # -- copies (ScanDriver._submit_rows) --------------------------------------------------------------
    def spec(self, plan: PluginPlan, name: str) -> st.ArraySpec:
        ch = self.channels[name]
        if ch.lima2 is not None:
            return plan.array_spec(name, ch.lima2.dtype, ch.lima2.shape)
        shape = tuple(int(n) for n in ch.info["shape"])
        spec = plan.array_spec(name, str(ch.info["dtype"]), shape)
        chunking = plan.scan.chunk_options
        return spectrum_chunks(spec, chunking.chunk_nbytes, plan.scan.npoints, chunking.compression_scheme is not None)

    def source(self, p: "StreamProgress", stop: int) -> st.RowsSource:
        ch = self.channels[p.name]
        if ch.lima2 is not None:
            assert ch.lima2.master is not None
            if not ch.master_ready and ch.receivers is not None:  # frames dealt round robin
                ch.receivers.fix()  # copied by this placement: it must not change any more
                return st.FileStridedSource(p.name, ch.receivers.pieces(p.submitted, stop), ch.lima2.shape)
            runs = [(ch.lima2.master[0], ch.lima2.master[1], p.submitted, stop - p.submitted)]
        elif ch.mode == PluginMode.MOSCA_SERVER:
            url = str(ch.info["mosca_info"]["server_url"])
            return st.MoscaServerSource(p.name, url, self._acquisition(ch), int(ch.info["detector"]))
        else:
            assert ch.mosca is not None
            runs = ch.mosca.runs(p.submitted, stop)
        return st.FileRunsSource(p.name, p.submitted, runs)

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
            if not ch.mode.copied and p.available and _link_state(ch, p) != ch.linked_state:
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
