"""`scan_info_to_h5map`: the file map BLISS publishes in `scan_info["h5maps"]`.

* `SCAN_SAVING.writer = "nexus"` (the tier's default): raises, as before. BLISS ignores h5map
  errors for that writer and publishes no `h5maps`, so nxpar plans the file from scan_info (spec §4).
* `SCAN_SAVING.writer = "mapping"`: BLISS must publish a map (it fails the scan otherwise). blisswriter
  1.x's real mapping is not on PyPI, so this stand-in maps the essentials with blissdata's h5map
  models: one NXentry per subscan (`<nb>.<i>`) with title and times, every channel at its primary
  dataset path (`instrument/<device>/<data>`, the path BLISS publishes as its HDF5 fallback) and a
  `measurement` soft link per channel. What it proves is the route (BLISS publishes, BLISS's
  ExternalTangoMappingWriter asks the BlissWriter device, nxpar writes the published map), not
  blisswriter 1.x's full tree.
"""
from __future__ import annotations

from copy import deepcopy


def scan_info_to_h5map(scan_info, configurable=True, flat=True, multivalue_positioners=False):
    if scan_info.get("data_writer") != "mapping":
        raise NotImplementedError("blisswriter.mapping.h5map is not available in this environment")
    from blissdata import h5map as h5m

    from .devices import all_devices_info, get_primary_dataset_path

    devices = all_devices_info(deepcopy(scan_info["nexuswriter"]["devices"]), scan_info, multivalue_positioners)
    root = h5m.Group(children={})  # the root attributes are the writer's
    for i, top in enumerate(scan_info["acquisition_chain"]):
        entry = f"{scan_info['scan_nb']}.{i + 1}"
        root.children[entry] = _entry(h5m, scan_info, entry, devices[top], get_primary_dataset_path)
    return {scan_info["filename"]: root}


def _entry(h5m, scan_info, entry, devices, primary_path):
    children = {key: h5m.Dataset(value=str(scan_info[key]))
                for key in ("title", "start_time", "end_time", "end_reason") if scan_info.get(key)}
    instrument = h5m.Group(attributes={"NX_class": "NXinstrument"}, children={})
    measurement = h5m.Group(attributes={"NX_class": "NXcollection"}, children={})
    for channel in devices:
        path = primary_path(channel, devices)  # instrument/<device>/<data>
        _, device, data = path.split("/")
        group = instrument.children.setdefault(device, h5m.Group(attributes={"NX_class": "NXdetector"}, children={}))
        group.children[data] = h5m.Dataset(value=h5m.Stream(stream=channel))
        short = channel.split(":")[-1].replace("/", "_")  # the channel's own name: robx, diode_mean, …
        measurement.children[short] = h5m.SoftLink(target_path=f"/{entry}/{path}")
    children["instrument"] = instrument
    children["measurement"] = measurement
    return h5m.Group(attributes={"NX_class": "NXentry"}, children=children)
