"""Channel → NeXus device mapping on the BLISS side (spec §4.5).

BLISS uses it for the HDF5 fallback path of every stream (`<nb>.1/<primary path>`). The algorithm
must equal the writer's; blisswriter 1.x's source is not available, so nxpar's pure implementation
(`nxpar/nexus/channel_mapping.py`, no imports beyond the standard library) is loaded by path.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

_NAME = "_nxpar_mapping_for_bliss"


def _mapping():
    if _NAME not in sys.modules:
        path = Path(__file__).resolve().parents[4] / "nxpar" / "nexus" / "channel_mapping.py"
        spec = importlib.util.spec_from_file_location(_NAME, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


def all_devices_info(config_devices: dict[str, Any], scan_info: dict[str, Any],
                     multivalue_positioners: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """{top master: {channel fullname: device info}} for every subscan of the scan."""
    m = _mapping()
    ndim = int(scan_info.get("data_dim", 1) or 1)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for top in scan_info["acquisition_chain"]:
        maps = m.map_subscan(scan_info, top, config_devices or {}, multivalue_positioners, ndim)
        out[top] = {name: {"device_type": c.device_type, "device_name": c.device_name,
                           "device_info": c.device_info, "data_type": c.data_type,
                           "data_name": c.data_name, "data_alias": c.data_alias,
                           "data_info": c.data_info, "unique_name": c.unique_name,
                           "master_index": c.master_index, "single": c.single,
                           "metadata_keys": c.metadata_keys}
                    for name, c in maps.items()}
    return out


def get_primary_dataset_path(fullname: str, devices: dict[str, dict[str, Any]]) -> str:
    """`instrument/<device>/<data name>` of a channel, names normalised as in the file."""
    norm = _mapping().normalise
    info = devices[fullname]
    return f"instrument/{norm(info['device_name'])}/{norm(info['data_name'])}"
