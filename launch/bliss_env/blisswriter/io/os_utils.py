"""Disk checks BLISS re-exports from `bliss.common.os_utils`."""
from __future__ import annotations

import os
import shutil


def has_write_permissions(path: str) -> bool:
    """True when `path` (or its first existing parent) is writable by this user."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.access(path, os.W_OK | os.X_OK)


def has_required_disk_space(path: str, required_disk_space: float) -> bool:
    """Free space (MB) at `path`'s first existing parent is at least `required_disk_space`."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free / 1024**2 >= required_disk_space
