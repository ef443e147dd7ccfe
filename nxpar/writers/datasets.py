"""ALL WRITER RANKS: the row datasets of the scan files: which rows each rank writes, creating,
looking up and resizing a dataset (collective metadata), and the raw-data write of a selection.

How a selection travels (collective or independent MPI-IO, or a serial file's plain write) is the
write mode's choice (`write_mode.py`); this module only carries it out.
"""
from __future__ import annotations

from typing import Sequence

import h5py
import numpy as np

from ..protocol import steps as st
from . import layout
from .filters import filter_kwargs


def share_of_rows(start: int, stop: int, chunk_rows: int, rank: int, size: int) -> tuple[int, int]:
    """This rank's contiguous rows of [start, stop): whole chunks only, so one rank owns each chunk."""
    if stop <= start:
        return start, start
    first_chunk, last_chunk = start // chunk_rows, (stop - 1) // chunk_rows
    nchunks = last_chunk - first_chunk + 1
    base, extra = divmod(nchunks, size)
    lo = first_chunk + rank * base + min(rank, extra)
    hi = lo + base + (1 if rank < extra else 0)
    if hi <= lo:
        return start, start
    return max(start, lo * chunk_rows), min(stop, hi * chunk_rows)


def needs_collective(spec: st.ArraySpec, dset: h5py.Dataset) -> bool:
    """Filtered datasets need collective transfers. Unfiltered ones too, unless a chunk is exactly
    one row: independent writes of a row slab into multi-row or tiled chunks go piece by piece
    through MPI-IO, one-row chunks do not (both measured by `python -m perf write_paths --compression
    none`, perf/RESULTS.md)."""
    if spec.compression != "none" or dset.chunks is None:
        return spec.compression != "none"
    nscan = spec.scan_ndim
    return any(c != 1 for c in dset.chunks[:nscan]) or tuple(dset.chunks[nscan:]) != tuple(dset.shape[nscan:])


def create_array(f: h5py.File, spec: st.ArraySpec) -> h5py.Dataset:
    """COLLECTIVE: a new row dataset, at its initial shape, growable along every axis."""
    shape = layout.initial_shape(spec)
    dset = f.create_dataset(
        spec.path, shape=shape, maxshape=(None,) * len(shape), dtype=np.dtype(spec.dtype),
        chunks=tuple(spec.chunks), fillvalue=spec.fillvalue, **filter_kwargs(spec.compression))
    for k, v in spec.attrs.items():
        dset.attrs[k] = v
    return dset


class RowDatasets:
    """The open row datasets of this rank's scans, kept per scan: a lookup is a collective metadata read."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], h5py.Dataset] = {}  # (scan id, path) -> open row dataset

    def get_or_create(self, scan_id: str, f: h5py.File, spec: st.ArraySpec) -> h5py.Dataset:
        """COLLECTIVE: the scan's dataset at spec.path, created on its first write."""
        key = (scan_id, spec.path)
        dset = self.open.get(key)
        if dset is None:
            dset = f.get(spec.path)
            if dset is None:
                dset = create_array(f, spec)
            self.open[key] = dset
        return dset

    def forget(self, scan_id: str) -> None:
        """The scan's handles go (its file closes, or a node deletion may leave one stale)."""
        self.open = {k: d for k, d in self.open.items() if k[0] != scan_id}


def resize_for(dset: h5py.Dataset, spec: st.ArraySpec, points: int, detector_dims: Sequence[int]) -> None:
    """COLLECTIVE: the extent that holds `points` scan points with these (agreed) detector dims."""
    shape = layout.scan_extent(spec, dset.shape[:spec.scan_ndim], points) + tuple(detector_dims)
    if dset.shape != shape:
        dset.resize(shape)


def write_selection(dset: h5py.Dataset, nscan: int, start: int, rows: np.ndarray | None,
                    transfer: int | None) -> None:
    """Raw-data write, each rank its rows (or an empty selection).

    transfer: h5fd.MPIO_COLLECTIVE or MPIO_INDEPENDENT on an MPI-IO file (filtered datasets need
    collective transfers, parallel HDF5 ≥ 1.10.2; unfiltered ones with one-row chunks are written
    independently: `needs_collective`); None: a serial file (one writer process), where an empty
    write has nobody to meet.
    Rows are consecutive scan points: one slab for flat scans, a few for grid scans.
    """
    if transfer is None and (rows is None or not len(rows)):
        return
    dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
    if transfer is not None:
        dxpl.set_dxpl_mpio(transfer)
    fspace = dset.id.get_space()
    detector_dims = tuple(dset.shape[nscan:])
    if rows is not None and len(rows):
        fspace.select_none()
        for slab_start, slab_count in layout.runs(start, start + len(rows), dset.shape[:nscan]):
            fspace.select_hyperslab(slab_start + (0,) * len(detector_dims), slab_count + detector_dims,
                                    op=h5py.h5s.SELECT_OR)
        mspace = h5py.h5s.create_simple(rows.shape)
        buf = rows
    else:
        fspace.select_none()
        mspace = h5py.h5s.create_simple((1,) + detector_dims)
        mspace.select_none()
        buf = np.zeros((1,) + detector_dims, dtype=dset.dtype)
    dset.id.write(mspace, fspace, buf, dxpl=dxpl)
