"""The `nexuswriter` scan metadata BLISS publishes for the writer (spec §2.11, §4.5, §4.1).

`register_metadata_generators` adds the category `nexuswriter` with three generators:
* `devices`: one entry per counter of the session (key: fullname, `.` → `:`) saying how the writer
  maps it — sampling counters (and their `_samples` / statistics channels), MCA counters, others `{}`;
* `instrument_info`: the instrument name (`ESRF-<beamline>`, short name `<beamline>`);
* `masterfiles`: `{"dataset": <dataset file>}` with separate scan files, else none (basic policy).
"""
from __future__ import annotations

import os
from typing import Any

SAMPLING_STATS = ("N", "std", "var", "min", "max", "p2v")


def _key(fullname: str) -> str:
    return fullname.replace(".", ":")


def counter_devices(counters) -> dict[str, dict[str, Any]]:
    from bliss.common.counter import SamplingCounter, SamplingMode
    from bliss.controllers.mca.counter import BaseMcaCounter

    devices: dict[str, dict[str, Any]] = {}
    for ctr in counters:
        fullname = getattr(ctr, "fullname", None)
        if not fullname:
            continue
        key = _key(fullname)
        if isinstance(ctr, SamplingCounter):
            info = {"type": "samplingcounter", "mode": ctr.mode.name}
            devices[key] = {"device_info": info, "device_type": "samplingcounter", "data_type": "signal"}
            suffixes = {SamplingMode.STATS: SAMPLING_STATS, SamplingMode.SAMPLES: ("samples",)}.get(ctr.mode, ())
            for suffix in suffixes:
                devices[f"{key}_{suffix}"] = {"device_info": dict(info), "device_type": "samplingcounter"}
        elif isinstance(ctr, BaseMcaCounter):
            devices[key] = {"device_info": {"type": "mca"}, "device_type": "mca"}
        else:
            devices[key] = {}
    return devices


def fill_devices(scan) -> dict:
    from bliss import global_map

    return {"devices": counter_devices(global_map.get_counters_iter())}


def fill_instrument_info(scan) -> dict:
    beamline = (os.environ.get("BEAMLINENAME") or os.environ.get("BEAMLINE") or "id00").lower()
    return {"instrument_info": {"name": f"ESRF-{beamline}", "name@short_name": beamline}}


def fill_masterfiles(scan) -> dict:
    if scan is None:
        return {"masterfiles": {}}
    writer = getattr(scan, "writer", None)
    separate = bool(getattr(writer, "separate_scan_files", False))
    filename = getattr(writer, "filename", None) if writer is not None else None
    return {"masterfiles": {"dataset": filename} if separate and filename else {}}


def register_metadata_generators(user_scan_meta) -> None:
    user_scan_meta.add_categories(["nexuswriter"])
    nexuswriter = user_scan_meta.nexuswriter
    nexuswriter.set("devices", fill_devices)
    nexuswriter.set("instrument_info", fill_instrument_info)
    nexuswriter.set("masterfiles", fill_masterfiles)
