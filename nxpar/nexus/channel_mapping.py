"""Channel → NeXus group/dataset mapping (docs/interface.md §4.3), identical to blisswriter 2.0.0's.

BLISS computes the same mapping for its HDF5 fallback paths, so the algorithm must match.
Pure logic: no I/O.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MCA_NAMES = {"icr": "trigger_count_rate", "ocr": "event_count_rate", "triggers": "triggers",
             "events": "events", "deadtime": "fractional_dead_time",
             "trigger_livetime": "trigger_live_time", "energy_livetime": "live_time",
             "realtime": "elapsed_time", "det": "spectrum"}
MCA_TYPES = {"spectrum": "principal", "icr": "icr", "ocr": "ocr",
             "triggers": "triggers", "events": "events", "deadtime": "deadtime",
             "trigger_livetime": "trigger_livetime", "energy_livetime": "livetime", "realtime": "realtime"}
LIMA_TYPES = {"image": "principal", "sum": "principal"}
MCA_UNITS = {"icr": "hertz", "livetime": "s", "trigger_livetime": "s", "realtime": "s"}


def normalise(name: str) -> str:
    """Every run of characters outside [a-zA-Z0-9_] becomes '_'."""
    return re.sub(r"[^a-zA-Z0-9_]+", "_", name)


@dataclass
class ChannelMap:
    fullname: str
    device_type: str = ""
    device_name: str = ""
    device_info: dict[str, Any] = field(default_factory=dict)
    data_type: str = "principal"
    data_name: str = "data"
    data_alias: str | None = None
    data_info: dict[str, Any] = field(default_factory=dict)
    unique_name: str = ""
    master_index: int = -1
    single: bool | None = None
    metadata_keys: dict[str, str] = field(default_factory=dict)
    device_key: str = ""  # key in scan_info["devices"]
    roi_channel: Any = None  # Mosca ROI counters: the config's `channel` (n, -1 or (a, b))

    @property
    def is_positioner(self) -> bool:
        return self.device_type in ("positioner", "positionergroup")

    @property
    def group(self) -> str:
        return "instrument/" + normalise(self.device_name)

    @property
    def dataset(self) -> str:
        return self.group + "/" + normalise(self.data_name)

    @property
    def alias(self) -> str | None:
        if self.data_alias and normalise(self.data_alias) != normalise(self.data_name):
            return self.group + "/" + normalise(self.data_alias)
        return None

    @property
    def measurement(self) -> str:
        return "measurement/" + normalise(self.unique_name)

    @property
    def nx_class(self) -> str:
        return "NXpositioner" if self.is_positioner else "NXdetector"


def shortest_unique_suffixes(fullnames: list[str]) -> dict[str, str]:
    """`axis:robx` → `robx`; `a:b:c` & `a:b:d` → `c`, `d`; `b:a` & `c:a` unchanged."""
    parts = {name: name.split(":") for name in fullnames}
    result = {}
    for name, p in parts.items():
        for n in range(1, len(p) + 1):
            suffix = ":".join(p[-n:])
            clash = any(other != name and ":".join(q[-n:]) == suffix for other, q in parts.items())
            if not clash:
                result[name] = suffix
                break
        else:
            result[name] = name
    return result


def subscan_channels(scan_info: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Top master → [(device key, channel fullname)] in acquisition-chain order."""
    devices = scan_info["devices"]
    out: dict[str, list[tuple[str, str]]] = {}
    for top, chain in scan_info["acquisition_chain"].items():
        out[top] = [(dev, ch) for dev in chain.get("devices", []) for ch in devices[dev].get("channels", [])]
    return out


def map_subscan(scan_info: dict[str, Any], top: str, config_devices: dict[str, Any],
                multivalue_positioners: bool = False, ndim: int = 1) -> dict[str, ChannelMap]:
    """The NeXus place of every channel of one top master (blisswriter's algorithm)."""
    devices = scan_info["devices"]
    channels = scan_info.get("channels", {})
    pairs = subscan_channels(scan_info)[top]
    first_trigger = _first_trigger(scan_info, top)
    maps: dict[str, ChannelMap] = {}
    for dev, fullname in pairs:
        m = _configured_map(fullname, dev, dict(config_devices.get(fullname, {}) or {}), channels)
        if dev == first_trigger and channels.get(fullname, {}).get("dim", 0) == 0:
            _make_master_positioner(m, devices[dev].get("channels", []), ndim)
        maps[fullname] = m
    short = shortest_unique_suffixes(list(maps))
    for fullname, m in maps.items():
        _complete(m, short[fullname], multivalue_positioners)
    return maps


def _first_trigger(scan_info: dict[str, Any], top: str) -> str | None:
    """The first device of the top master's chain that triggers others (its channels: the master positioners)."""
    devices = scan_info["devices"]
    triggers = [dev for dev in scan_info["acquisition_chain"][top].get("devices", [])
                if devices[dev].get("triggered_devices")]
    return triggers[0] if triggers else None


def _configured_map(fullname: str, dev: str, cfg: dict[str, Any], channels: dict[str, Any]) -> ChannelMap:
    """A channel's map as the writer's device config (scan_info["nexuswriter"]["devices"]) gives it."""
    m = ChannelMap(fullname=fullname, device_key=dev)
    m.device_type = cfg.get("device_type", "") or ""
    m.device_name = cfg.get("device_name", fullname)
    m.device_info = dict(cfg.get("device_info", {}) or {})
    m.data_type = cfg.get("data_type", "principal")
    m.data_name = cfg.get("data_name", "data")
    m.data_alias = cfg.get("data_alias")
    m.data_info = dict(cfg.get("data_info") or {"units": channels.get(fullname, {}).get("unit")})
    m.unique_name = cfg.get("unique_name", fullname)
    m.roi_channel = cfg.get("channel")
    return m


def _make_master_positioner(m: ChannelMap, dev_channels: list[str], ndim: int) -> None:
    """A 0-d channel of the first triggering device: a positioner, or one of a positioner group (1D scans)."""
    k = dev_channels.index(m.fullname)
    in_group = ndim <= 1 and len(dev_channels) > 1 and ":" in m.fullname
    if in_group:
        m.device_type, m.master_index = "positionergroup", 0
    else:
        m.device_type, m.master_index = "positioner", k
    m.data_type = "principal" if k == 0 else ""


def _complete(m: ChannelMap, short_name: str, multivalue_positioners: bool) -> None:
    """Device and data names by device type, then `single`, the default alias and the unique name."""
    if m.device_name == m.fullname:
        m.device_name = short_name
    _parse_type(m, multivalue_positioners)
    if m.single is None:
        m.single = m.data_type == "principal"
    if m.data_type == "principal" and m.data_alias is None:
        m.data_alias = "value" if m.is_positioner else "data"
    m.unique_name = m.device_name if m.single else f"{m.device_name}:{m.data_name}"


def _parse_type(m: ChannelMap, multivalue_positioners: bool) -> None:
    """Device name, data name and data type from the channel's name, by device type (`_PARSERS`)."""
    parts = m.fullname.split(":")
    if m.device_type == "positionergroup":
        _parse_positioner_group(m, parts, multivalue_positioners)
    else:
        _PARSERS.get(m.device_type, _parse_other)(m, parts)


def _parse_mca(m: ChannelMap, parts: list[str]) -> None:
    """`[<prefix>:]<stat>_<det>` → device `<prefix>:<det>`; `[<prefix>:]<stat>` → `<prefix>:sum`."""
    prefix, last = ":".join(parts[:-1]), parts[-1]
    if "_" in last:
        stat, det = last.rsplit("_", 1)
        m.device_name = f"{prefix}:{det}" if prefix else det
    else:
        stat = last
        m.device_name = f"{prefix}:sum" if prefix else "sum"
    m.data_name = MCA_NAMES.get(stat, stat)
    m.data_type = "roi" if stat.startswith("roi") else MCA_TYPES.get(stat, stat)
    m.data_info["units"] = MCA_UNITS.get(m.data_type)


def _parse_lima(m: ChannelMap, parts: list[str]) -> None:
    """`<det>:image`, or `<det>:<kind>:<rest>`: ROI counters, profiles and collections get a device of
    their own; an image and a sum are the principal data (blisswriter 2.0.0's lima type map)."""
    if len(parts) != 3:
        m.device_name, data = parts[0], ":".join(parts[1:])
    else:
        det, kind, rest = parts
        if kind == "roi_counters":
            roi, _, data = rest.rpartition("_")
            m.device_name, m.metadata_keys = f"{det}:{roi}", {roi: "selection"}
        elif kind == "roi_profiles":
            m.device_name, data, m.metadata_keys = f"{det}:{rest}", "sum", {rest: "selection"}
        elif kind == "roi_collection":
            m.device_name, data, m.metadata_keys = f"{det}:{kind}", "sum", {"roi_collection_counter": "selection"}
        else:
            m.device_name, data = f"{det}:{kind}", rest
    m.data_name, m.data_type = data, LIMA_TYPES.get(data, data)


# the data name that is a device's principal data, for the devices named by their channels' first part
_PRINCIPAL_DATA_NAME = {"mythen": "spectrum", "lima2": "frame", "autofilter": None}


def _parse_first_part_device(m: ChannelMap, parts: list[str]) -> None:
    """`<device>:<data name>` (mythen, lima2, autofilter)."""
    m.device_name = parts[0]
    rest = ":".join(parts[1:]) or "data"
    m.data_name = rest
    m.data_type = "principal" if rest == _PRINCIPAL_DATA_NAME[m.device_type] else rest


def _parse_sampling_counter(m: ChannelMap, parts: list[str]) -> None:
    """A `signal` data type is the principal data; else `<base>_<stat>` → device `<base>`, data `<stat>`."""
    if m.data_type == "signal":
        m.data_type, m.data_name = "principal", "signal"
        return
    name = parts[-1]
    if "_" in name:
        base, suffix = name.rsplit("_", 1)
        m.device_name, m.data_name, m.data_type = base, suffix, suffix


def _parse_positioner_group(m: ChannelMap, parts: list[str], multivalue_positioners: bool) -> None:
    """One positioner of a group: its own device (multivalue_positioners) or one `value` of the group."""
    if m.data_type != "principal":
        m.data_type = parts[-1]
    if multivalue_positioners:
        m.device_name = ":".join(parts[:-1]) or m.device_name
        m.data_name = "value" if m.data_type == "principal" else m.data_type
    else:
        m.data_name, m.single = "value", True


def _parse_positioner(m: ChannelMap, parts: list[str]) -> None:
    m.data_name, m.data_type = "value", "principal"


def _parse_other(m: ChannelMap, parts: list[str]) -> None:
    m.data_name, m.data_type = "data", "principal"


def _parse_mosca(m: ChannelMap, parts: list[str]) -> None:
    """blisswriter 2.0.0: `<ctrl>:spectrum:spec_det00` → device `<ctrl>:det0`, `spectrum`;
    `<ctrl>:stat:icr_det00` → `<ctrl>:det0`, `trigger_count_rate`; `<ctrl>:roi:<name>…` → the
    ROI's `channel` from the config: (a, b) → `sum_a_b`, -1 → `sum_all`, n → `det<n>`."""
    last = parts[-1].split("_")
    kind = parts[-2] if len(parts) >= 2 else ""
    if kind == "spectrum":
        channel, stat = f"det{int(last[-1][-2:])}", "spectrum"
    elif kind == "stat":
        channel, stat = f"det{int(last[-1][-2:])}", "_".join(last[:-1])
    elif kind == "roi":
        roi = m.roi_channel
        if isinstance(roi, (list, tuple)) and len(roi) == 2:
            channel, stat = f"sum_{roi[0]}_{roi[1]}", "_".join(last[:-3])
        elif roi == -1:
            channel, stat = "sum_all", "_".join(last[:-2])
        else:
            channel, stat = f"det{roi}", "_".join(last[:-1])
    else:
        m.data_name, m.data_type = "data", "principal"
        return
    m.data_name = MCA_NAMES.get(stat, stat)
    m.data_type = "roi" if kind == "roi" else MCA_TYPES.get(stat, stat)
    m.device_name = ":".join(parts[:-2] + [channel])
    m.data_info["units"] = MCA_UNITS.get(m.data_type)


_PARSERS: dict[str, Callable[[ChannelMap, list[str]], None]] = {
    "mca": _parse_mca, "mosca": _parse_mosca, "lima": _parse_lima,
    "mythen": _parse_first_part_device, "lima2": _parse_first_part_device, "autofilter": _parse_first_part_device,
    "samplingcounter": _parse_sampling_counter, "positioner": _parse_positioner,
}
