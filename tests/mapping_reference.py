"""nxpar's channel → NeXus mapping beside blisswriter 2.0.0's own, channel by channel.

nxpar's side: `nxpar/nexus/channel_mapping.py` called as nxpar/nexus/plan.py calls it. The reference:
blisswriter 2.0.0's `device_info` / `get_primary_dataset_path`, loaded from the wheel that
launch/setup_bliss.sh downloads into .cache-bliss/, called exactly as BLISS's side calls them in the
real-BLISS tier (launch/bliss_env/blisswriter/mapping/devices.py). No BLISS needed: both are pure.

`mapping_inputs` keeps of a scan_info only what the mapping reads; the fast tier compares over the
inputs of the tier's scans recorded in tests/unit/data/bliss_tier_mapping_inputs.json.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from launch.bliss_env.blisswriter.mapping import devices as bliss_side
from launch.bliss_env.blisswriter.mapping import reference
from nxpar.nexus.channel_mapping import map_subscan
from nxpar.nexus.scan_info import grid_shape

RECORDED = Path(__file__).resolve().parent / "unit" / "data" / "bliss_tier_mapping_inputs.json"

# Differences found and not yet mended in nxpar/nexus/channel_mapping.py (the tests set them apart
# and say so, strictly: once mended, delete the entry). Key: the tail of the `differences` line.
KNOWN: dict[str, str] = {}  # differences understood and accepted (none)


@dataclass(frozen=True)
class Place:
    """Where one channel goes, as one side maps it (names as mapped, the path normalised)."""
    device_type: str
    device_name: str
    data_type: str
    data_name: str
    data_alias: str | None
    unique_name: str
    primary_path: str
    master_index: int
    single: bool
    units: str | None


def reference_available() -> bool:
    return reference.WHEEL.is_file()


def config_devices(scan_info: dict[str, Any]) -> dict[str, Any]:
    return (scan_info.get("nexuswriter") or {}).get("devices") or {}


def nxpar_places(scan_info: dict[str, Any]) -> dict[str, dict[str, Place]]:
    """{top master: {channel: Place}} as nxpar's writer maps them (options: configurable, no
    multivalue positioners, the defaults)."""
    ndim = max(len(grid_shape(scan_info)), 1)
    out = {}
    for top in scan_info["acquisition_chain"]:
        maps = map_subscan(scan_info, top, config_devices(scan_info), False, ndim)
        out[top] = {name: Place(m.device_type, m.device_name, m.data_type, m.data_name, m.data_alias,
                                m.unique_name, m.dataset, m.master_index, m.single, m.data_info.get("units"))
                    for name, m in maps.items()}
    return {top: places for top, places in out.items() if places}


def reference_places(scan_info: dict[str, Any]) -> dict[str, dict[str, Place]]:
    """{top master: {channel: Place}} as blisswriter 2.0.0 maps them, called as BLISS's side calls it."""
    tops = bliss_side.all_devices_info(copy.deepcopy(config_devices(scan_info)), scan_info)
    out = {}
    for top, devices in tops.items():
        out[top] = {name: Place(d["device_type"], d["device_name"], d["data_type"], d["data_name"],
                                d["data_alias"], d["unique_name"], bliss_side.get_primary_dataset_path(name, devices),
                                d["master_index"], d["single"], d["data_info"].get("units"))
                    for name, d in devices.items()}
    return out


def differences(scan_info: dict[str, Any]) -> list[str]:
    """`<top> <channel> <field>: nxpar <value> != blisswriter 2.0.0 <value>`, one per difference."""
    ours, theirs = nxpar_places(scan_info), reference_places(scan_info)
    if ours.keys() != theirs.keys():
        return [f"top masters: nxpar {sorted(ours)} != blisswriter 2.0.0 {sorted(theirs)}"]
    found = []
    for top in ours:
        if list(ours[top]) != list(theirs[top]):
            found.append(f"{top} channels: nxpar {list(ours[top])} != blisswriter 2.0.0 {list(theirs[top])}")
            continue
        for channel, place in ours[top].items():
            other = asdict(theirs[top][channel])
            found += [f"{top} {channel} {key}: nxpar {value!r} != blisswriter 2.0.0 {other[key]!r}"
                      for key, value in asdict(place).items() if value != other[key]]
    return found


def is_known(difference: str) -> bool:
    return any(difference.endswith(tail) for tail in KNOWN)


def mapping_inputs(scan_info: dict[str, Any]) -> dict[str, Any]:
    """What the mapping reads of a scan_info: the chain, its devices and channels (dim, unit), the
    scan dimensions and the `nexuswriter` devices of the scan's channels."""
    chain = scan_info["acquisition_chain"]
    used = {dev for top in chain.values() for dev in top.get("devices", [])}
    devices = {dev: {k: v for k, v in scan_info["devices"][dev].items() if k in ("channels", "triggered_devices")}
               for dev in sorted(used)}
    names = {ch for d in devices.values() for ch in d.get("channels", [])}
    channels = {ch: {k: v for k, v in info.items() if k in ("dim", "unit")}
                for ch, info in scan_info.get("channels", {}).items() if ch in names}
    dims = {k: v for k, v in scan_info.items() if k == "data_dim" or k.startswith("npoints")}
    config = {ch: c for ch, c in config_devices(scan_info).items() if ch in names}
    return {"title": scan_info.get("title"), **dims, "acquisition_chain": {t: {"devices": c.get("devices", [])}
            for t, c in chain.items()}, "devices": devices, "channels": channels,
            "nexuswriter": {"devices": config}}
