"""RANK 0 ONLY: the Mosca channels of one scan, the Mosca part of plugin_streams.py.

Mosca events are JSON `{last_read_index, last_saved_index}` (the last one counts). Spectra Mosca
saves are copied by the writer ranks from its files (spectrum-sized chunks) or linked (a VDS, device
property `mosca_vds`), counted from the files Mosca closed; spectra it does not save are read from
the Mosca server (`nxpar.sources.mosca_server`), each server asked at most once a refresh round and
left alone for SERVER_BACKOFF_S after a failure. What cannot be written is a warning, never a FAULT.
`files` names the files the spectra come from, for the allowed-roots check (plugin_streams.py).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..nexus.file_plan import PluginDataset, PluginPlan
from ..nexus.plugin_plan import PluginMode, mosca_vds_node, spectrum_chunks
from ..protocol import steps as st
from ..sources import mosca_server
from ..sources.detector_files import MoscaSaving
from .plugin_channel import MASTER_CHECK_PERIOD_S, PluginChannel, Warn

if TYPE_CHECKING:
    from .row_writes import StreamProgress
    from .scan_source import ScanSource

log = logging.getLogger("nxpar.scan")

SERVER_BACKOFF_S = 5.0  # a Mosca server that could not be asked is not asked again for this long


@dataclass
class ServerPoll:
    """What one Mosca server said last (all the channels it serves share it)."""

    points: int = 0
    asked_round: int = -1  # the refresh round it was asked in
    asked_at: float = float("-inf")
    failed_at: float = float("-inf")
    error: str = ""  # why the last call failed ("" after an answer)


class MoscaChannels:
    """The Mosca channels of one scan (`PluginPart`), and the servers they are read from."""

    def __init__(self, source: "ScanSource", warn: Warn) -> None:
        self.scan_source = source
        self._warn = warn
        self.servers: dict[str, ServerPoll] = {}  # Mosca server url → its last answer
        self.round = 0  # refresh rounds: a Mosca server is asked at most once a round

    def new_round(self) -> None:
        self.round += 1

    def channel(self, name: str, info: dict[str, Any], plan: PluginPlan) -> PluginChannel:
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

    @staticmethod
    def event(ch: PluginChannel, last: Any) -> None:
        ch.reported = max(ch.reported, int(last["last_read_index"]) + 1)
        ch.saved = max(ch.saved, int(last["last_saved_index"]) + 1)

    def available(self, ch: PluginChannel, sealed: bool) -> int:
        if ch.mode == PluginMode.MOSCA_SERVER:
            return self._served(ch, sealed)
        return self._saved(ch, sealed)

    def _saved(self, ch: PluginChannel, sealed: bool) -> int:
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

    def _served(self, ch: PluginChannel, sealed: bool) -> int:
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

    @staticmethod
    def vds_node(plan: PluginPlan, ch: PluginChannel, p: "StreamProgress", c: PluginDataset) -> st.Node:
        """Over the files Mosca saved."""
        assert ch.mosca is not None
        path = c.dataset_path
        shape = tuple(int(n) for n in ch.info["shape"])
        c.dtype, c.detector_shape = str(ch.info["dtype"]), shape
        return mosca_vds_node(path, plan.filename, ch.mosca.runs(0, p.available), c.dtype, shape[0],
                              ch.mosca.points_per_file)

    @staticmethod
    def files(ch: PluginChannel, stop: int) -> list[str]:
        """The files Mosca saves points [0, stop) in (vds_node, source; the first one for stop 0)."""
        assert ch.mosca is not None
        return [ch.mosca.file(0), *dict.fromkeys(run[0] for run in ch.mosca.runs(0, stop))]

    @staticmethod
    def spec(plan: PluginPlan, ch: PluginChannel) -> st.ArraySpec:
        """Whole spectra per chunk."""
        shape = tuple(int(n) for n in ch.info["shape"])
        spec = plan.array_spec(ch.name, str(ch.info["dtype"]), shape)
        chunking = plan.scan.chunk_options
        return spectrum_chunks(spec, chunking.chunk_nbytes, plan.scan.npoints, chunking.compression_scheme is not None)

    def source(self, ch: PluginChannel, p: "StreamProgress", stop: int) -> st.RowsSource:
        if ch.mode == PluginMode.MOSCA_SERVER:
            url = str(ch.info["mosca_info"]["server_url"])
            return st.MoscaServerSource(p.name, url, self._acquisition(ch), int(ch.info["detector"]))
        assert ch.mosca is not None
        return st.FileRunsSource(p.name, p.submitted, ch.mosca.runs(p.submitted, stop))
