"""scan_info parsed and validated once, into typed options, before any file is touched.

Malformed input raises ValueError naming the key (the scan then FAULTs with that reason); this
includes chunk options and an unknown compression scheme, so a scan that cannot be written never
gets a file. The plans (plan.py, h5map_plan.py) read the parsed `ScanOptions`, not the raw keys.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .chunking import ChunkOptions

MANDATORY = ("name", "filename", "scan_nb", "title", "start_time", "acquisition_chain", "devices",
             "scan_meta_categories")


@dataclass(frozen=True)
class ScanOptions:
    """What the plans need from scan_info, checked."""

    filename: str  # the file this scan is written to (scan_file())
    dataset_filename: str  # scan_info['filename'] (differs with separate_scan_files)
    npoints: int  # expected points (0: unknown)
    grid: tuple[int, ...]  # the nD scan shape of a mesh, slow first; () otherwise
    chunk_options: ChunkOptions


def now_iso() -> str:
    return datetime.datetime.now().astimezone().isoformat()


def iso_with_tz(value: str) -> str:
    dt = datetime.datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.isoformat()


def saving_enabled(scan_info: dict[str, Any], writer_name: str) -> bool:
    return bool(scan_info.get("save")) and scan_info.get("data_writer") == writer_name


def parse_common(scan_info: dict[str, Any]) -> ScanOptions:
    """The keys every plan needs (filename, npoints, grid, chunk options), validated."""
    validate_filename(scan_info.get("filename"))
    npoints = scan_info.get("npoints", 0)
    if npoints is not None and (isinstance(npoints, bool) or not isinstance(npoints, (int, float))
                                or not np.isfinite(npoints) or npoints < 0):
        raise ValueError(f"scan_info['npoints'] must be a non-negative number, got {npoints!r}")
    return ScanOptions(filename=scan_file(scan_info), dataset_filename=scan_info["filename"],
                       npoints=int(npoints or 0), grid=grid_shape(scan_info),
                       chunk_options=ChunkOptions.from_scan_info(scan_info))


def parse(scan_info: dict[str, Any]) -> ScanOptions:
    """Everything a scan_info-planned scan (plan.ScanPlan) needs; ValueError names the first problem."""
    _validate_keys(scan_info)
    return parse_common(scan_info)


def validate_filename(filename: Any) -> None:
    """scan_info['filename']: a non-empty absolute path without '..' (ValueError otherwise)."""
    if not isinstance(filename, str) or not filename:
        raise ValueError(f"scan_info['filename'] must be a non-empty string, got {filename!r}")
    if not os.path.isabs(filename):
        raise ValueError(f"scan_info['filename'] must be an absolute path, got {filename!r}")
    if ".." in filename.split(os.sep):
        raise ValueError(f"scan_info['filename'] must not contain '..': {filename!r}")


def validate(scan_info: dict[str, Any]) -> None:
    """Raise ValueError naming the first problem (→ scan FAULT with that reason)."""
    parse(scan_info)


def _validate_keys(scan_info: dict[str, Any]) -> None:
    """The mandatory keys and their types (parse_common checks the rest)."""
    missing = [k for k in MANDATORY if k not in scan_info]
    if missing:
        raise ValueError(f"scan_info is missing {', '.join(repr(k) for k in missing)}")
    validate_filename(scan_info.get("filename"))
    nb = scan_info["scan_nb"]
    if isinstance(nb, bool) or not isinstance(nb, int) or nb <= 0:
        raise ValueError(f"scan_info['scan_nb'] must be a positive integer, got {nb!r}")
    if not isinstance(scan_info["title"], str) or not scan_info["title"]:
        raise ValueError("scan_info['title'] must be a non-empty string")
    try:
        iso_with_tz(scan_info["start_time"])
    except (TypeError, ValueError):
        raise ValueError(f"scan_info['start_time'] is not ISO 8601: {scan_info['start_time']!r}") from None
    _validate_chain(scan_info["acquisition_chain"], scan_info["devices"])
    if not isinstance(scan_info["scan_meta_categories"], list):
        raise ValueError("scan_info['scan_meta_categories'] must be a list")


def _validate_chain(chain: Any, devices: Any) -> None:
    if not isinstance(chain, dict) or not isinstance(devices, dict):
        raise ValueError("scan_info['acquisition_chain'] and ['devices'] must be dictionaries")
    for top, content in chain.items():
        if not isinstance(content, dict) or not isinstance(content.get("devices", []), list):
            raise ValueError(f"acquisition_chain[{top!r}] must have a 'devices' list")
        for dev in content.get("devices", []):
            if dev not in devices or not isinstance(devices[dev].get("channels", []), list):
                raise ValueError(f"device {dev!r} of acquisition_chain[{top!r}] is not described in scan_info['devices']")


def scan_file(scan_info: dict[str, Any]) -> str:
    """The file the scan is written to: the dataset file, or with `separate_scan_files`
    `<dataset dir>/<images_path elements before the first '{'>/bliss_master.h5` (as blisswriter)."""
    filename = scan_info["filename"]
    options = scan_info.get("writer_options") or {}
    images_path = scan_info.get("images_path")
    if not (options.get("separate_scan_files") and isinstance(images_path, str) and images_path):
        return filename
    root = os.path.dirname(filename)
    parts = []
    for part in os.path.relpath(images_path, root).split(os.sep):
        if "{" in part:
            break
        parts.append(part)
    if parts and parts[-1] and os.path.basename(images_path) == parts[-1]:
        parts = parts[:-1]  # the last element is a file name prefix, not a directory
    return os.path.join(root, *parts, "bliss_master.h5")


def grid_shape(scan_info: dict[str, Any]) -> tuple[int, ...]:
    """The nD scan shape (npoints_n, …, npoints_1), or () when the scan is 0D/1D or a dimension
    is unknown (then it is written as a 1D scan)."""
    try:
        ndim = int(scan_info.get("data_dim", 1) or 1)
        dims = [int(scan_info.get(f"npoints{i}") or 0) for i in range(1, ndim + 1)]
    except (TypeError, ValueError):
        return ()
    if ndim <= 1 or any(n <= 0 for n in dims):
        return ()
    return tuple(reversed(dims))
