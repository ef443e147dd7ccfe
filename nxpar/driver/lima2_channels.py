"""RANK 0 ONLY: the Lima2 channels of one scan, the Lima2 part of plugin_streams.py.

Lima2 events are uint32 progress counts (the last one counts). Frames are linked (a VDS) or copied
by the writer ranks on request. Lima2 writes its master file only at the end: until then frames are
linked / copied straight from the receivers' files (`nxpar.sources.lima2_receivers`), which rank 0
looks at every MASTER_CHECK_PERIOD_S; after the seal the master files are waited for once per scan
(WAIT_S). Frames that cannot be written are a warning, never a scan FAULT. `files` names the files
the channel's frames come from, for the allowed-roots check (plugin_streams.py).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..nexus.file_plan import PluginDataset, PluginPlan
from ..nexus.plugin_plan import Lima2Info, PluginMode, lima2_mode, lima2_receivers_vds_node, lima2_vds_node
from ..protocol import steps as st
from ..sources.detector_files import WAIT_S, lima2_master_ready
from ..sources.lima2_receivers import Lima2Receivers
from .plugin_channel import MASTER_CHECK_PERIOD_S, PluginChannel, Warn

if TYPE_CHECKING:
    from .row_writes import StreamProgress
    from .scan_source import ScanSource

log = logging.getLogger("nxpar.scan")


class Lima2Channels:
    """The Lima2 channels of one scan (`PluginPart`): one wait for the master files per scan."""

    def __init__(self, source: "ScanSource", warn: Warn) -> None:
        self.scan_source = source
        self._warn = warn
        self.sealed_deadline: float | None = None  # the one wait for master files after the seal

    def channel(self, name: str, info: dict[str, Any], plan: PluginPlan) -> PluginChannel:
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

    @staticmethod
    def event(ch: PluginChannel, last: Any) -> None:
        ch.reported = max(ch.reported, int(last))

    def available(self, ch: PluginChannel, sealed: bool) -> int:
        """Linked: every reported frame (the files looked at for the VDS); copied: the frames that
        can be copied."""
        if ch.mode == PluginMode.LIMA2_LINK:
            self._look_at_files(ch, sealed)
            return ch.reported
        return self._copyable(ch, sealed)

    def _copyable(self, ch: PluginChannel, sealed: bool) -> int:
        """Frames in complete receivers' files during the scan; all reported frames once the master
        or the receivers' files hold them after the end. A placement the disk contradicts after
        copies began stops the copies until the master file comes."""
        self._look_at_files(ch, sealed)
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

    def _look_at_files(self, ch: PluginChannel, sealed: bool) -> None:
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

    @staticmethod
    def vds_node(plan: PluginPlan, ch: PluginChannel, p: "StreamProgress", c: PluginDataset) -> st.Node:
        """Over the master file once it holds the frames, over the receivers' files meanwhile."""
        assert ch.lima2 is not None
        path = c.dataset_path
        c.dtype, c.detector_shape = ch.lima2.dtype, ch.lima2.shape
        rcv = ch.receivers
        if ch.master_ready or rcv is None or not rcv.receivers:
            return lima2_vds_node(path, plan.filename, ch.lima2, p.available)
        return lima2_receivers_vds_node(path, plan.filename, ch.lima2, p.available, rcv.pieces(0, p.available))

    @staticmethod
    def files(ch: PluginChannel, stop: int) -> list[str]:
        """The files frames [0, stop) are linked to or copied from now (vds_node, source): the master
        file (always: it is looked at) and, until it holds the frames, the receivers' files."""
        assert ch.lima2 is not None and ch.lima2.master is not None
        rcv = ch.receivers
        pieces = rcv.pieces(0, stop) if rcv is not None and rcv.receivers and not ch.master_ready else []
        return [ch.lima2.master[0], *dict.fromkeys(piece.path for piece in pieces)]

    @staticmethod
    def spec(plan: PluginPlan, ch: PluginChannel) -> st.ArraySpec:
        assert ch.lima2 is not None
        return plan.array_spec(ch.name, ch.lima2.dtype, ch.lima2.shape)

    @staticmethod
    def source(ch: PluginChannel, p: "StreamProgress", stop: int) -> st.RowsSource:
        assert ch.lima2 is not None and ch.lima2.master is not None
        if not ch.master_ready and ch.receivers is not None:  # frames dealt round robin
            ch.receivers.fix()  # copied by this placement: it must not change any more
            return st.FileStridedSource(p.name, ch.receivers.pieces(p.submitted, stop), ch.lima2.shape)
        runs = [(ch.lima2.master[0], ch.lima2.master[1], p.submitted, stop - p.submitted)]
        return st.FileRunsSource(p.name, p.submitted, runs)
