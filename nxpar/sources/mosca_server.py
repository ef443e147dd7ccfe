"""Mosca spectra that Mosca does not save, read from the Mosca server (all ranks).

blissdata-mosca 2.0.5 reads a Mosca stream through mosca-client 2.0.5's `MixedReader`: from the
files when Mosca saves, otherwise from the Mosca *Tango* device named by the stream's
`mosca_info.server_url` (`mosca_client/tango/readers.py` `Reader`: `metadata` and
`read_spectra([first, last])` commands, `n_available_points` attribute; the acquisition id is
not used yet by that client). nxpar does the same with the same client: rank 0 asks how many
points the server holds (`available_points`), the writer ranks read their share of the spectra
(`read_spectra`, `MoscaServerSource` steps). Calls are bounded by the Tango client timeout.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

TIMEOUT_MS = 3000  # each call to the Mosca device
MAX_READERS = 16  # readers kept per process (the oldest dropped first)


@dataclass(frozen=True)
class Acquisition:
    """Which acquisition a Mosca server is read for: the scan, and Mosca's acquisition id. mosca-client's
    Reader keeps the acquisition's metadata (detectors, spectrum size) and ignores the id for now,
    so readers are kept per scan: a new scan never reads with an earlier scan's metadata."""

    scan_key: str
    acq_id: Any = None


_readers: dict[tuple[str, Acquisition], Any] = {}  # (server url, acquisition) → mosca-client Reader
_readers_lock = threading.Lock()  # rank 0 asks from several scan threads


def client_installed() -> bool:
    try:
        import mosca_client.tango.readers  # noqa: F401
    except ImportError:
        return False
    return True


def _reader(url: str, acq: Acquisition) -> Any:
    """One mosca-client Reader per server and acquisition (it keeps the acquisition's metadata)."""
    key = (url, acq)
    reader = _readers.get(key)
    if reader is None:
        from mosca_client.tango.readers import Reader

        reader = Reader(url, acq.acq_id)
        reader.proxy.set_timeout_millis(TIMEOUT_MS)  # connects: not under the lock
        with _readers_lock:
            while len(_readers) >= MAX_READERS:
                _readers.pop(next(iter(_readers)))
            _readers[key] = reader
    return reader


def forget(url: str, acq: Acquisition) -> None:
    """Drop a reader whose server failed (the next call connects again)."""
    _readers.pop((url, acq), None)


def available_points(url: str, acq: Acquisition) -> int:
    """RANK 0: points the server holds for reading (raises if it cannot be asked)."""
    try:
        return int(_reader(url, acq).n_available_points)
    except Exception:
        forget(url, acq)
        raise


def read_spectra(url: str, acq: Acquisition, detector: int, lo: int, hi: int) -> np.ndarray:
    """WRITER RANKS: spectra [lo, hi) of one detector element, (hi - lo, spectrum size)."""
    try:
        spectra = _reader(url, acq).read_spectra(lo, hi, read_detectors=[detector])
    except Exception:
        forget(url, acq)
        raise
    rows = np.asarray(spectra)[0]
    if rows.shape[0] != hi - lo:
        raise RuntimeError(f"Mosca server {url}: {rows.shape[0]} spectra for points {lo}..{hi - 1}")
    return rows
