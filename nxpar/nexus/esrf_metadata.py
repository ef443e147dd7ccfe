"""ESRF sample metadata (docs/interface.md §4.2): the `Sample*` keys of the dataset metadata snapshot as NeXus.

The conversion is pyicat-plus's `create_nxtreedict` (offline ICAT definitions), as in blisswriter,
so that the groups and names are the ones ICAT and the ESRF data portal expect.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

log = logging.getLogger("nxpar.esrf")

EXCLUDED = ("SamplePositioners_value", "SamplePositioners_name")


@functools.lru_cache(maxsize=1)
def _converter() -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    try:
        from pyicat_plus.metadata.nexus import create_nxtreedict
    except ImportError as e:
        log.warning("pyicat-plus is not installed: ESRF sample metadata is not written (%s)", e)
        return None
    return create_nxtreedict


def sample_tree(scan_info: dict[str, Any]) -> dict[str, Any]:
    """{name: value or sub-dict} to write into each NXentry, or {} when there is nothing to write."""
    if str(scan_info.get("data_policy") or "").upper() != "ESRF":
        return {}
    snapshot = scan_info.get("dataset_metadata_snapshot")
    if not isinstance(snapshot, dict):
        return {}
    sample = {k: v for k, v in snapshot.items() if k.startswith("Sample") and k not in EXCLUDED}
    convert = _converter() if sample else None
    if convert is None:
        return {}
    try:
        tree = convert(sample)
    except Exception as e:  # bad metadata must not fail the scan: the data matters more
        log.warning("ESRF sample metadata not written: %s", e)
        return {}
    return {k: v for k, v in tree.items() if not k.startswith("@")}
