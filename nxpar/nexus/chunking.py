"""Chunk shapes and compression per dataset (docs/interface.md §4.4): blisswriter 2.0.0's chunk guesser.

Every dataset follows BLISS's `chunk_nbytes`, `chunk_split` and `compression_limit_nbytes`:
frames may be tiled or k frames to a chunk. Writer ranks share rows by whole chunks along the
scan axis (`ArraySpec.rows_per_chunk`), so each chunk still has one owner rank in a collective
filtered write. The one deviation: in a keepshape grid a frame chunk lies inside one grid row
(slow scan dims chunked by 1, a divisor of the row length), so that chunks never straddle two
ranks' point ranges.
Frames default to bitshuffle-LZ4 when the scan names no scheme; below the limit nothing is compressed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .compression import DEFAULT_2D, DEFAULT_OTHER, normalise_scheme

ALLOWED_CHUNK_OPTIONS = {"compression_scheme", "chunk_nbytes", "compression_limit_nbytes", "chunk_split"}


@dataclass
class ChunkOptions:
    compression_scheme: str | None = None
    chunk_nbytes: int = 1 << 20
    compression_limit_nbytes: int = 1 << 20
    chunk_split: int = 4

    @classmethod
    def from_scan_info(cls, scan_info: dict[str, Any]) -> "ChunkOptions":
        opts = ((scan_info.get("writer_options") or {}).get("chunk_options") or {})
        if not isinstance(opts, dict):
            raise ValueError("writer_options.chunk_options must be a dictionary")
        unknown = set(opts) - ALLOWED_CHUNK_OPTIONS
        if unknown:
            raise ValueError(f"Unknown chunk options {sorted(unknown)}")
        scheme = opts.get("compression_scheme")  # an unknown name fails here, before any file exists
        result = cls(compression_scheme=None if scheme is None else normalise_scheme(scheme, DEFAULT_OTHER))
        for key in ("chunk_nbytes", "compression_limit_nbytes", "chunk_split"):
            if opts.get(key) is not None:
                value = int(opts[key])  # BLISS sends MB * 1024**2, possibly a float
                if value < 0 or (value == 0 and key != "compression_limit_nbytes"):  # limit 0: always compress
                    raise ValueError(f"chunk option {key} must be > 0")
                setattr(result, key, value)
        return result


def guess_chunks(shape: tuple[int, ...], itemsize: int, chunk_nbytes: int, chunk_split: int) -> tuple[int, ...]:
    """blisswriter 2.0.0: variable dims → 512; split dims from the last until ~chunk_nbytes."""
    shape = tuple(n if n > 0 else 512 for n in shape)
    if math.prod(shape) * itemsize <= chunk_nbytes:
        return shape
    max_elements = max(chunk_nbytes // itemsize, 1)
    chunks: list[int] = []
    current = 1
    for n in reversed(shape):
        c = min(math.ceil(n / chunk_split), math.ceil(max_elements / current)) if current < max_elements else 1
        chunks.insert(0, max(c, 1))
        current *= chunks[0]
    return tuple(chunks)


def dataset_layout(scan_shape: tuple[int, ...], detector_shape: tuple[int, ...], dtype: str,
                   options: ChunkOptions) -> tuple[tuple[int, ...], str]:
    """(chunks, compression scheme) of a dataset of the expected `scan_shape` (flat: (npoints,),
    0 = unknown; keepshape: the nD grid) times the detector shape (-1 = variable)."""
    itemsize = np.dtype(dtype).itemsize
    frames = len(detector_shape) >= 2 and all(n > 0 for n in detector_shape)
    expected = tuple(scan_shape) + tuple(detector_shape)
    chunks = guess_chunks(expected, itemsize, options.chunk_nbytes, options.chunk_split)
    if frames and len(scan_shape) > 1:  # grid: whole chunks inside one grid row (one owner rank)
        nscan, fast = len(scan_shape), max(scan_shape[-1], 1)
        k = max(d for d in range(1, chunks[nscan - 1] + 1) if fast % d == 0)
        chunks = (1,) * (nscan - 1) + (k,) + chunks[nscan:]
    nbytes = math.prod(n if n > 0 else 512 for n in expected) * itemsize
    scheme = normalise_scheme(options.compression_scheme, DEFAULT_2D if frames else DEFAULT_OTHER)
    return chunks, scheme if nbytes > options.compression_limit_nbytes else "none"


def fill_value(dtype: str) -> Any:
    dt = np.dtype(dtype)
    if dt.kind in "fc":
        return np.nan
    if dt.kind == "b":
        return True  # blisswriter 2.0.0 quirk, kept for compatibility
    return 0
