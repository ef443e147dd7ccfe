"""Rank 0's polling of Mosca servers and Lima2 master files (nxpar.driver.plugin_streams, its
mosca_channels and lima2_channels), at its boundary: a stand-in for the scan's Redis events and for
mosca_server's one call to a server."""
from __future__ import annotations

import time

from nxpar.driver import lima2_channels, mosca_channels
from nxpar.driver.plugin_channel import MASTER_CHECK_PERIOD_S, PluginChannel
from nxpar.driver.plugin_streams import PluginStreams
from nxpar.driver.row_writes import StreamProgress
from nxpar.nexus.plugin_plan import Lima2Info, PluginMode
from nxpar.sources import mosca_server


class Events:
    """The scan source as PluginStreams asks it: the last event and seal of each plugin stream."""

    key = "esrf:scan:1"
    info = {"name": "1_loopscan"}

    def __init__(self) -> None:
        self.last: dict[str, tuple] = {}

    def last_events(self, names):
        return {n: self.last[n] for n in names}

    def decode_last(self, name, data):
        return data


def streams_of(events: Events, channels: list[PluginChannel]):
    warnings: list[str] = []
    ps = PluginStreams(events, channel=None, warn=warnings.append)
    for ch in channels:
        ps.channels[ch.name] = ch
    return ps, {ch.name: StreamProgress(ch.name, ch.mode.value) for ch in channels}, warnings


def mosca(name: str, url: str) -> PluginChannel:
    return PluginChannel(name, "mosca", PluginMode.MOSCA_SERVER, {"mosca_info": {"server_url": url, "acq_id": 7},
                                                                 "detector": 0})


def test_a_mosca_server_is_asked_once_a_round_and_left_alone_after_a_failure(monkeypatch):
    asked: list[tuple[str, mosca_server.Acquisition]] = []

    def available_points(url, acq):
        asked.append((url, acq))
        if url == "id00/mosca/down":
            raise RuntimeError("no answer")
        return 5

    monkeypatch.setattr(mosca_server, "available_points", available_points)
    events = Events()
    channels = [mosca(f"fx:spectrum:spec_det{i:02d}", "id00/mosca/fx") for i in range(3)]
    channels += [mosca(f"fy:spectrum:spec_det{i:02d}", "id00/mosca/down") for i in range(2)]
    for ch in channels:
        events.last[ch.name] = ({"last_read_index": 8, "last_saved_index": -1}, False)
    ps, streams, warnings = streams_of(events, channels)
    ps.refresh(streams)
    assert sorted(url for url, _ in asked) == ["id00/mosca/down", "id00/mosca/fx"]
    assert {acq for _, acq in asked} == {mosca_server.Acquisition("esrf:scan:1", 7)}
    assert [streams[ch.name].available for ch in channels] == [5, 5, 5, 0, 0]
    assert len([w for w in warnings if "id00/mosca/down cannot be read" in w]) == 2
    ps.refresh(streams)  # at once: neither asked again
    assert len(asked) == 2
    time.sleep(MASTER_CHECK_PERIOD_S / 4 + 0.05)
    ps.refresh(streams)  # the server that answered is asked again, the one that failed is left alone
    assert sorted(url for url, _ in asked[2:]) == ["id00/mosca/fx"]
    monkeypatch.setattr(mosca_channels, "SERVER_BACKOFF_S", 0.0)
    time.sleep(MASTER_CHECK_PERIOD_S / 4 + 0.05)
    for ch in channels:  # sealed: asked once more, once per server
        events.last[ch.name] = ({"last_read_index": 8, "last_saved_index": -1}, True)
    ps.refresh(streams)
    assert sorted(url for url, _ in asked[3:]) == ["id00/mosca/down", "id00/mosca/fx"]


def test_lima2_master_files_are_waited_for_once_per_scan(tmp_path, monkeypatch):
    """Two sealed Lima2 channels whose master file never comes: one wait for both, not one each."""
    monkeypatch.setattr(lima2_channels, "WAIT_S", 0.6)
    events = Events()
    channels = []
    for name in ("eiger:frame", "eiger:acc_frame"):
        master = (str(tmp_path / f"{name.replace(':', '_')}_master.h5"), "/entry_0000/data")
        channels.append(PluginChannel(name, "lima2", PluginMode.LIMA2_LINK, {}, lima2=Lima2Info("uint16", (4, 3), master)))
        events.last[name] = (3, True)
    ps, streams, warnings = streams_of(events, channels)
    t0 = time.monotonic()
    ps.refresh(streams)
    assert 0.6 <= time.monotonic() - t0 < 1.0
    assert all(ch.settled and not ch.complete for ch in channels)
    assert len([w for w in warnings if "waited 0.6 s" in w]) == 2
