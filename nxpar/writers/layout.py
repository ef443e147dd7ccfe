"""Where scan points land in a dataset: flat or nD grid (keepshape), fixed or variable detector dims.

Pure logic shared by all writer ranks (no MPI, no HDF5 calls), so that it can be unit tested.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..protocol.steps import ArraySpec


def initial_shape(spec: ArraySpec) -> tuple[int, ...]:
    """Flat scans start empty; nD scans start as the full grid; variable detector dims start at 0."""
    scan = tuple(spec.scan_shape) if spec.scan_shape else (0,)
    return scan + tuple(max(n, 0) for n in spec.detector_shape)


def scan_extent(spec: ArraySpec, current: Sequence[int], points: int) -> tuple[int, ...]:
    """The scan dims that hold `points` points: grow axis 0 (the slow axis of a grid) only."""
    current = tuple(current)
    if not spec.scan_shape:
        return (max(current[0], points),)
    fast = math.prod(current[1:])
    return (max(current[0], -(-points // fast)),) + current[1:]


def runs(lo: int, hi: int, scan_dims: Sequence[int]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Hyperslabs (start, count) over the scan dims covering flat points [lo, hi) in C order.

    Flat scans: one slab. Grids: a partial first row, a block of whole rows, a partial last
    row (for 3D and more, whole rows are not merged across the middle axes).
    """
    if hi <= lo:
        return []
    scan_dims = tuple(scan_dims)
    if len(scan_dims) == 1:
        return [((lo,), (hi - lo,))]
    fast = scan_dims[-1]
    slabs: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    p = lo
    while p < hi:
        index = np.unravel_index(p, scan_dims)
        col = int(index[-1])
        if col == 0 and len(scan_dims) == 2 and hi - p >= fast:
            nrows = (hi - p) // fast
            slabs.append(((int(index[0]), 0), (nrows, fast)))
            p += nrows * fast
            continue
        n = min(fast - col, hi - p)
        slabs.append((tuple(int(i) for i in index), (1,) * (len(scan_dims) - 1) + (n,)))
        p += n
    return slabs


def as_rows(raw: Any, spec: ArraySpec, detector_dims: Sequence[int] | None = None) -> np.ndarray:
    """Rows as one contiguous array (n, *detector dims) of the dataset dtype.

    Variable dims: blissdata gives a list of arrays of different shapes (or one array when they
    happen to agree); each row is padded with the fill value up to `detector_dims`
    (default: the longest row).
    """
    dtype = np.dtype(spec.dtype)
    if not spec.variable:
        rows = np.ascontiguousarray(raw, dtype=dtype)
        expected = tuple(spec.detector_shape)
        if rows.shape[1:] != expected:
            raise ValueError(f"got rows of shape {rows.shape}, expected (n, {', '.join(map(str, expected))})")
        return rows
    items = [np.asarray(r, dtype=dtype) for r in raw]
    ndet = len(spec.detector_shape)
    check_variable_rows(items, spec)
    if detector_dims is None:
        detector_dims = max_dims(items, ndet)
    out = np.full((len(items),) + tuple(detector_dims), spec.fillvalue, dtype=dtype)
    for i, r in enumerate(items):
        out[(i,) + tuple(slice(0, n) for n in r.shape)] = r
    return out


def check_variable_rows(raw: Any, spec: ArraySpec) -> None:
    """ValueError unless every row has the declared number of dimensions and the declared fixed ones."""
    ndet = len(spec.detector_shape)
    for r in raw:
        shape = np.shape(r)
        if len(shape) != ndet or any(fixed >= 0 and n != fixed for n, fixed in zip(shape, spec.detector_shape)):
            raise ValueError(f"got a row of shape {shape}, expected {tuple(spec.detector_shape)}")


def max_dims(rows: Sequence[np.ndarray], ndet: int) -> tuple[int, ...]:
    dims = [0] * ndet
    for r in rows:
        dims = [max(a, b) for a, b in zip(dims, np.shape(r))]
    return tuple(dims)
