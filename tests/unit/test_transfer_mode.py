"""Which raw-data writes are collective: every filtered one, and unfiltered ones unless a chunk is one row."""
from __future__ import annotations

import h5py
import pytest

from nxpar.protocol.steps import ArraySpec
from nxpar.writers.datasets import needs_collective as _needs_collective


@pytest.mark.parametrize("chunks, compression, scan_shape, expected", [
    ((8, 256, 256), "lz4-bitshuffle", (), True),
    ((1, 1024, 1024), "gzip", (), True),
    ((1, 1024, 1024), "none", (), False),  # one frame per chunk: independent is faster
    ((8, 256, 256), "none", (), True),  # tiled / multi-row chunks: independent goes piece by piece
    ((8, 1024, 1024), "none", (), True),
    ((1, 1, 1024, 1024), "none", (3, 4), False),  # a grid scan with one-frame chunks
    ((1, 2, 1024, 1024), "none", (3, 4), True),
])
def test_transfer_mode(chunks, compression, scan_shape, expected):
    nscan = max(len(scan_shape), 1)
    shape = (scan_shape or (0,)) + (1024, 1024)
    spec = ArraySpec("d", "uint16", (1024, 1024), chunks, compression, 0, scan_shape=scan_shape)
    with h5py.File("t.h5", "w", driver="core", backing_store=False) as f:
        dset = f.create_dataset("d", shape=shape, maxshape=(None,) * nscan + (1024, 1024), chunks=chunks,
                                dtype="uint16")
        assert _needs_collective(spec, dset) is expected
