"""RANK 0 ONLY: which plan a scan's file follows (both are `FilePlan`s, nexus/file_plan.py)."""
from __future__ import annotations

from typing import Any

from ..nexus.file_plan import FilePlan
from ..nexus.h5map_plan import H5MapPlan, has_h5map
from ..nexus.plan import ScanPlan
from ..protocol.options import SaveOptions


def make_plan(info: dict[str, Any], options: SaveOptions, blissdata_version: str) -> FilePlan:
    """The publisher's own file map when it sent one (newer blissdata), else the tree from scan_info.

    scan_info is parsed and validated here, once: ValueError (scan FAULT) before any file is touched."""
    if has_h5map(info):
        return H5MapPlan(info, options, blissdata_version)
    return ScanPlan(info, options, blissdata_version)
