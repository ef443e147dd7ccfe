"""Compression schemes (nexus/compression.py) → the HDF5 filters h5py installs on a dataset."""
from __future__ import annotations

from typing import Any

import hdf5plugin


def filter_kwargs(scheme: str) -> dict[str, Any]:
    """Keyword arguments for h5py `create_dataset` that install the scheme's filters."""
    if scheme == "none":
        return {}
    if scheme == "gzip":
        return {"compression": "gzip"}
    if scheme == "byteshuffle":
        return {"shuffle": True}
    if scheme == "gzip-byteshuffle":
        return {"compression": "gzip", "shuffle": True}
    if scheme == "bitshuffle":
        return dict(hdf5plugin.Bitshuffle(nelems=0, cname="none"))
    if scheme == "lz4-bitshuffle":
        return dict(hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    if scheme == "blosc-zstd":
        return dict(hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
    raise ValueError(f"Unknown HDF5 compression '{scheme}'")
