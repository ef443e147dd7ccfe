"""The storing path's local pieces (writers/storing/), on real HDF5 without MPI: the split of a write's
rows among the ranks, whole chunks against rows HDF5 merges, and chunks encoded from the pipeline the
storing rank sends, byte for byte what HDF5 stores (Blosc's skipped filter included)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import h5py
import numpy as np
import pytest

from nxpar.protocol import steps as st
from nxpar.writers.datasets import create_array, resize_for
from nxpar.writers.storing.bundle import compress_threads, split_share, start_encoding
from nxpar.writers.storing.plan import BatchPlan, WritePlan, pipeline_for
from nxpar.writers.storing.shares import (BatchCost, Share, ShareSplit, batch_scheme, direct_rows,
                                          fixed_share_from_env, storing_chunks)


def whole_write(spec: st.ArraySpec, start: int, stop: int) -> Share:
    """One rank's part of a write when it is the only writer rank: every row, every chunk."""
    return ShareSplit(1).assignments([(start, stop, spec.rows_per_chunk, spec.row_nbytes, spec.chunk_tiles)], "", 0)[0]


@pytest.mark.parametrize("ranks", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("fixed", [1.0, 0.75, 0.0, None])
@pytest.mark.parametrize("start,stop", [(0, 64), (5, 61), (3, 4), (8, 9), (0, 0), (17, 130)])
@pytest.mark.parametrize("overhead", [0.0, 3.5, 40.0])
def test_shares_are_contiguous_whole_chunks_covering_the_write(ranks, fixed, start, stop, overhead):
    split = ShareSplit(ranks, fixed, {"gzip": overhead * 4 * 100})
    shares = [split.shares([(start, stop, 4, 100, 1), (0, 3, 4, 1, 1)], "gzip", rank)[0] for rank in range(ranks)]
    rows = [r for lo, hi in shares for r in range(lo, hi)]
    assert rows == list(range(start, stop))  # every row once, in rank order
    owners = {}
    for rank, (lo, hi) in enumerate(shares):
        for r in range(lo, hi):
            assert owners.setdefault(r // 4, rank) == rank  # one owner per chunk


@pytest.mark.parametrize("ranks", [1, 2, 4, 5, 8])
@pytest.mark.parametrize("start,stop", [(0, 64), (5, 61), (3, 4), (8, 9), (17, 130), (0, 4)])
@pytest.mark.parametrize("tiles", [1, 3, 4])
@pytest.mark.parametrize("overhead", [0.0, 2.5])
def test_the_chunks_of_a_chunk_row_are_shared_each_encoded_once(ranks, start, stop, tiles, overhead):
    """Tiled chunk rows: every chunk of every whole-or-tail chunk row has one rank, each rank reads the
    rows of the chunk rows it has chunks in, the head rows (before the first boundary) are the storing
    rank's alone, and rows sent raw (no pipeline) are sent once."""
    split = ShareSplit(ranks, None, {"gzip": overhead * 4 * 100})
    parts = [split.assignments([(start, stop, 4, 100 * tiles, tiles)], "gzip", rank)[0] for rank in range(ranks)]
    head_end = min(-(-start // 4) * 4, stop)
    owners: dict[tuple[int, int], int] = {}
    for rank, part in enumerate(parts):
        for r in range(head_end // 4, -(-stop // 4)):
            for tile in range(tiles):
                if part.encodes(r, tile):
                    assert part.lo <= max(r * 4, start) and min(r * 4 + 4, stop) <= part.hi  # its rows are read
                    assert owners.setdefault((r, tile), rank) == rank
    assert len(owners) == (-(-stop // 4) - head_end // 4) * tiles  # every chunk of the write, once
    assert all(p.lo >= head_end or rank == 0 for rank, p in enumerate(parts) if p.hi > p.lo)
    sent = [r for p in parts for r in range(*p.raw_rows())]
    assert sorted(sent) == list(range(start, stop))  # raw: every row once


def test_the_storing_rank_keeps_its_row_unless_storing_costs_more_than_a_row():
    """One chunk row per rank (1024² frames): a second row on another rank would cost the step a row."""
    assert storing_chunks(4, 4, 0.3) == 1 and storing_chunks(4, 4, 0.9) == 1
    assert storing_chunks(4, 4, 1.2) == 0  # storing alone outlasts two rows on one rank: it gives its row up
    assert storing_chunks(40, 4, 0.0) == 10  # an even split
    assert storing_chunks(40, 4, 4.0) == 7  # 7 + 4 = 11 rows' worth, the others 11 each
    assert storing_chunks(1, 4, 0.0) == 1 and storing_chunks(0, 4, 2.0) == 0 and storing_chunks(9, 1, 3.0) == 9
    assert ShareSplit(4, 0.5).counts(35, 100, "gzip", True) == [5, 10, 10, 10]
    assert ShareSplit(3, 0.0).counts(10, 100, "gzip", True) == [0, 5, 5]
    assert ShareSplit(4, None, {"gzip": 400.0}).counts(40, 100, "gzip", True) == [7, 11, 11, 11]
    assert ShareSplit(4, None, {"gzip": 400.0}).counts(40, 100, "gzip", False) == [10, 10, 10, 10]


def test_the_storing_rank_measures_what_storing_costs_it_by_scheme():
    split = ShareSplit(4)
    # the others: 1 s for 1000 bytes; the storing rank: 1.3 s for 800 bytes → 0.5 s of storing = 500 bytes
    new = split.balanced("lz4", 100, BatchCost(1.3, 800), [BatchCost(1.0, 1000), BatchCost(1.0, 1000)])
    assert new == pytest.approx(0.5 * 500)
    split.overheads["lz4"] = new
    assert split.balanced("lz4", 100, BatchCost(1.3, 800), [BatchCost(1.0, 1000)]) == pytest.approx(375)
    assert split.balanced("lz4", 10_000, BatchCost(1.3, 800), [BatchCost(1.0, 1000)]) is None  # too small a move
    assert split.balanced("lz4", 100, BatchCost(1.3, 800), [BatchCost(0.0, 0)]) is None  # nothing to tell by
    assert ShareSplit(4, 0.7).balanced("lz4", 100, BatchCost(1.3, 8), [BatchCost(1.0, 10)]) is None  # fixed
    assert batch_scheme([("none", 10), ("gzip", 300), ("lz4", 200)]) == "gzip"


def test_a_fixed_weight_from_the_environment_is_clamped(monkeypatch):
    monkeypatch.setenv("NXPAR_STORING_SHARE", "3")
    assert fixed_share_from_env() == 1.0
    monkeypatch.setenv("NXPAR_STORING_SHARE", "nonsense")
    assert fixed_share_from_env() is None
    monkeypatch.delenv("NXPAR_STORING_SHARE")
    assert fixed_share_from_env() is None
    monkeypatch.setenv("NXPAR_STORING_SHARE", "0.6")
    assert fixed_share_from_env() == 0.6


def test_direct_rows_start_at_the_first_chunk_boundary():
    assert direct_rows(0, 12, 4) == 0
    assert direct_rows(2, 13, 4) == 4  # rows 2, 3 go through HDF5; chunk 3 (row 12) is encoded padded
    assert direct_rows(5, 7, 4) == 7  # none
    assert direct_rows(4, 7, 4) == 4


def test_compress_threads_share_the_cores_among_the_writer_ranks(monkeypatch):
    import os

    monkeypatch.delenv("NXPAR_COMPRESS_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert compress_threads(1) == cores and compress_threads(cores * 4) == 1
    monkeypatch.setenv("NXPAR_COMPRESS_THREADS", "3")
    assert compress_threads(8) == 3


FRAME = (20, 40)


def spec_of(scheme: str) -> st.ArraySpec:
    return st.ArraySpec(path="/d", dtype="uint16", detector_shape=FRAME, chunks=(3, 8, 16), compression=scheme,
                        fillvalue=7)


def rows_of(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    smooth = np.add.outer(np.arange(FRAME[0]), np.arange(FRAME[1]))[None] + rng.poisson(3, (n // 2,) + FRAME)
    noise = rng.integers(0, 65535, (n - n // 2,) + FRAME)  # Blosc leaves these unfiltered
    return np.concatenate([smooth, noise]).astype("uint16")


@pytest.mark.parametrize("scheme", ["gzip-byteshuffle", "lz4-bitshuffle", "blosc-zstd", "bitshuffle", "gzip"])
def test_chunks_encoded_from_the_sent_pipeline_are_the_bytes_hdf5_stores(tmp_path, scheme):
    """A rank without the file encodes from the pickled pipeline: the chunks (edge tiles padded, filter
    masks as HDF5 sets them) equal HDF5's own, chunk for chunk; rows before the first whole chunk and
    after the last go back raw."""
    import pickle

    rows = rows_of(14)
    spec = spec_of(scheme)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        by_hdf5, by_us = create_array(f, replace(spec, path="/hdf5")), create_array(f, spec)
        for d in (by_hdf5, by_us):
            resize_for(d, spec, 14, FRAME)
        by_hdf5[:] = rows
        plan = BatchPlan("", [WritePlan(pickle.loads(pickle.dumps(pipeline_for(spec, by_us))))])
        assert plan.writes[0].pipeline is not None
        with ThreadPoolExecutor(2) as pool:
            encoding = start_encoding(pool, plan, [st.WriteRows(spec, None, 1, 14)], [whole_write(spec, 1, 14)], [rows[1:]])
            parts = [future.result() for future in encoding.parts] + [encoding.last(0.0, 0)]
        chunks = [c for p in parts for c in p.chunks]
        raw = [r for p in parts for r in p.raw]
        assert not any(p.error for p in parts) and parts[-1].last and len(chunks) == 4 * 3 * 3
        # rows 1, 2 share chunk 0 with row 0; the last chunk (rows 12, 13) is encoded padded
        assert [(r.first, len(r.rows)) for r in raw] == [(1, 2)]
        for chunk in chunks:
            if chunk.offset[0] < 12:
                assert (chunk.mask, bytes(chunk.data)) == by_hdf5.id.read_direct_chunk(chunk.offset)
            by_us.id.write_direct_chunk(chunk.offset, chunk.data, chunk.mask)
        for r in raw:
            by_us[r.first:r.first + len(r.rows)] = r.rows
        np.testing.assert_array_equal(by_us[1:], rows[1:])  # row 0: nobody wrote it
        if scheme == "blosc-zstd":
            assert {c.mask for c in chunks} == {0, 1}


def test_datasets_other_ranks_cannot_encode_go_raw(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as f:
        assert pipeline_for(spec_of("none"), create_array(f, spec_of("none"))) is None
        grid = st.ArraySpec(path="/g", dtype="uint16", detector_shape=FRAME, chunks=(1, 2, 8, 16),
                            compression="gzip", fillvalue=0, scan_shape=(3, 4))
        assert pipeline_for(grid, create_array(f, grid)) is None
        variable = st.ArraySpec(path="/v", dtype="int32", detector_shape=(-1,), chunks=(4, 8), compression="gzip",
                                fillvalue=-1)
        assert pipeline_for(variable, create_array(f, variable)) is None
    runs, raw = split_share(WritePlan(None), 0, Share(5, 8), np.zeros((3,) + FRAME, "uint16"))
    assert runs == [] and [(r.first, len(r.rows)) for r in raw] == [(5, 3)]


def test_a_padded_last_chunk_row_a_filter_skipped_goes_raw(tmp_path, monkeypatch):
    """HDF5 1.10.8 loses a chunk's filter mask when it merges later rows into it: a padded last chunk row
    with a tile an optional filter skipped goes raw, all its tiles; whole chunks keep their mask."""
    from nxpar.writers.direct.chunk_codec import ChunkEncoder, FilterFunc, FilterStep
    from nxpar.writers.storing import bundle

    skipping = ChunkEncoder([FilterStep(FilterFunc(lambda *args: 0), 1, ())], (3, 8, 16), np.dtype("uint16"),
                            skip_optional=True)
    monkeypatch.setattr(bundle, "encoder_of", lambda pipeline: skipping)
    spec = spec_of("blosc-zstd")
    rows = rows_of(8)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        plan = BatchPlan("", [WritePlan(pipeline_for(spec, create_array(f, spec)))])
    with ThreadPoolExecutor(2) as pool:
        encoding = start_encoding(pool, plan, [st.WriteRows(spec, None, 0, 8)], [whole_write(spec, 0, 8)], [rows])
        parts = [future.result() for future in encoding.parts]
    chunks = [c for p in parts for c in p.chunks]
    assert {c.offset[0] for c in chunks} == {0, 3} and {c.mask for c in chunks} == {1}
    assert [(r.first, len(r.rows)) for p in parts for r in p.raw] == [(6, 2)]
