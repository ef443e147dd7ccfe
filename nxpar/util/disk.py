"""Permission and free-space checks on a scan file's location (answers BLISS within its 3 s timeout)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, TimeoutError

_statvfs_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="statvfs")
STATVFS_TIMEOUT_S = 0.1  # as blisswriter: a hung file system must not block a Tango command


def nearest_existing_parent(path: str) -> str | None:
    """The path itself if it exists, else its closest existing ancestor."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path


def has_write_permissions(filename: str) -> bool:
    """May this process write/create `filename`? (W_OK on the file, else on the nearest parent dir)."""
    if os.path.exists(filename):
        return os.access(filename, os.W_OK)
    parent = nearest_existing_parent(os.path.dirname(os.path.abspath(filename)))
    return parent is not None and os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK)


def free_bytes(directory: str, timeout: float | None = None) -> int | None:
    """Bytes free for unprivileged users in `directory`; None if statvfs fails (or does not
    answer within `timeout`: a hung file system must not block a Tango command)."""
    try:
        if timeout is None:
            st = os.statvfs(directory)
        else:
            st = _statvfs_pool.submit(os.statvfs, directory).result(timeout=timeout)
    except (TimeoutError, OSError):
        return None
    return st.f_frsize * st.f_bavail


def free_mb(filename: str) -> float | None:
    """Free MiB where `filename` lives (or would be created); None if statvfs does not answer in time."""
    parent = nearest_existing_parent(os.path.dirname(os.path.abspath(filename)) or "/")
    if parent is None:
        return None
    free = free_bytes(parent, STATVFS_TIMEOUT_S)
    return None if free is None else free / 1024**2


def disk_space_message(filename: str | None, threshold_mb: float) -> str:
    """'' or 'Free disk space below <threshold> MB' (the text BLISS shows for the disk checks)."""
    if not filename or threshold_mb <= 0:
        return ""
    free = free_mb(filename)
    if free is not None and free < threshold_mb:
        return f"Free disk space below {threshold_mb:.0f} MB"
    return ""
