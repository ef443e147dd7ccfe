"""Channel → NeXus device mapping on the BLISS side (spec §4.5): blisswriter 2.0.0's own.

BLISS uses it for the HDF5 fallback path of every stream (`<nb>.1/<primary path>`), so the writer
must agree with it. BLISS 2.4.0 imports these names from blisswriter 1.x, which is not on PyPI;
2.0.0 has the same algorithm as `blisswriter.nexus.devices.device_info` and
`blisswriter.nexus.mapping.get_primary_dataset_path` (spec §0.2). Both are used as they are, loaded
from the downloaded wheel (reference.py); only the call signature is adapted: BLISS 2.4.0 gives no
scan dimension, which 2.0.0's writer computes from scan_info (`ScanInfo.scan_ndim`).
"""
from __future__ import annotations

from typing import Any

from . import reference


def scan_ndim(scan_info: dict[str, Any]) -> int:
    """blisswriter 2.0.0's `ScanInfo.scan_ndim`: `data_dim` (default 1), or 1 when an nD scan
    lacks one of its `npoints<i>`."""
    ndim = scan_info.get("data_dim", 1)
    if ndim <= 1:
        return ndim
    if all(scan_info.get(f"npoints{i}", 0) for i in range(1, ndim + 1)):
        return ndim
    return 1


def all_devices_info(config_devices: dict[str, Any], scan_info: dict[str, Any],
                     multivalue_positioners: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """{top master: {channel fullname: device info}} for every subscan of the scan (2.0.0's
    `device_info`; it fills and keeps `config_devices`' entries: BLISS passes a copy)."""
    return reference.nexus_devices().device_info(
        config_devices, scan_info, scan_ndim=scan_ndim(scan_info), short_names=True,
        multivalue_positioners=multivalue_positioners)


def get_primary_dataset_path(fullname: str, devices: dict[str, dict[str, Any]]) -> str:
    """`instrument/<device>/<data name>` of a channel, names normalised as in the file (2.0.0's)."""
    return reference.nexus_mapping().get_primary_dataset_path(fullname, devices)
