"""Compression schemes: names used in `writer_options.chunk_options.compression_scheme` (pure; the HDF5
filters of each are in writers/filters.py).

Every scheme here is an HDF5 filter applied inside collective writes (parallel HDF5 ≥ 1.10.2
supports filters only there). Names of blisswriter 2.0.0 are accepted, plus the faster
`blosc-zstd`; `lz4-bitshuffle` (bitshuffle + LZ4) is nxpar's default for 2D frames.
"""
from __future__ import annotations

SCHEMES = (
    "none",
    "gzip",
    "byteshuffle",
    "gzip-byteshuffle",
    "bitshuffle",
    "lz4-bitshuffle",
    "blosc-zstd",
)
DEFAULT_2D = "lz4-bitshuffle"
DEFAULT_OTHER = "gzip-byteshuffle"


def normalise_scheme(name: str | None, default: str) -> str:
    """Map a user value to a known scheme; None → default. Unknown → ValueError (scan FAULT)."""
    if name is None:
        return default
    key = str(name).strip().lower().replace("_", "-")
    aliases = {"": "none", "bitshuffle-lz4": "lz4-bitshuffle", "lz4": "lz4-bitshuffle",
               "byteshuffle-gzip": "gzip-byteshuffle", "zstd": "blosc-zstd",
               "blosc": "blosc-zstd"}
    key = aliases.get(key, key)
    if key not in SCHEMES:
        raise ValueError(f"Unknown HDF5 compression '{name}' (known: {', '.join(SCHEMES)})")
    return key
