"""Pure logic (no services): mapping, chunking, row ownership, validation, formatting."""
from __future__ import annotations

import numpy as np
import pytest

from launch.simulate import ScanSpec, scan_info
from nxpar.nexus.channel_mapping import map_subscan, shortest_unique_suffixes
from nxpar.nexus.chunking import guess_chunks
from nxpar.nexus.plan import ScanPlan
from nxpar.nexus.scan_info import validate
from nxpar.protocol.options import SaveOptions
from nxpar.service.display import align_columns
from nxpar.writers.datasets import share_of_rows


@pytest.mark.parametrize("shape,itemsize,expected", [
    ((10,), 8, (10,)), ((0,), 8, (512,)), ((10, 1024), 4, (10, 1024)), ((1000, 4096), 4, (250, 1024)),
    ((10, 512, 512), 2, (3, 128, 128)), ((100, 2048, 2048), 2, (2, 512, 512))])
def test_chunk_guesser_matches_blisswriter_table(shape, itemsize, expected):
    assert guess_chunks(shape, itemsize, 1 << 20, 4) == expected


@pytest.mark.parametrize("start,stop,chunk,size", [(0, 23, 1, 3), (5, 17, 1, 4), (0, 23, 10, 2), (3, 1000, 512, 3)])
def test_rows_are_shared_by_whole_chunks_without_gap_or_overlap(start, stop, chunk, size):
    shares = [share_of_rows(start, stop, chunk, r, size) for r in range(size)]
    rows = [i for lo, hi in shares for i in range(lo, hi)]
    assert rows == list(range(start, stop))
    owners = {}
    for r, (lo, hi) in enumerate(shares):
        for i in range(lo, hi):
            assert owners.setdefault(i // chunk, r) == r  # one owner per chunk


def test_short_names():
    assert shortest_unique_suffixes(["axis:robx", "a:b:c", "a:b:d", "b:a", "c:a"]) == {
        "axis:robx": "robx", "a:b:c": "c", "a:b:d": "d", "b:a": "b:a", "c:a": "c:a"}


def test_mapping_of_spec_example():
    info = scan_info(ScanSpec("s", "/tmp/x.h5", 1, 3, mca_channels=16))
    maps = map_subscan(info, "axis", info["nexuswriter"]["devices"])
    assert maps["axis:robx"].dataset == "instrument/robx/value" and maps["axis:robx"].is_positioner
    assert maps["diode_ctrl:diode"].dataset == "instrument/diode/signal"
    assert maps["diode_ctrl:diode"].alias == "instrument/diode/data"
    assert maps["simu1:spectrum_det0"].dataset == "instrument/simu1_det0/spectrum"
    assert maps["simu1:realtime_det0"].dataset == "instrument/simu1_det0/elapsed_time"
    assert maps["simu1:realtime_det0"].measurement == "measurement/simu1_det0_elapsed_time"
    assert maps["cam:image"].dataset == "instrument/image/data"


@pytest.mark.parametrize("change,message", [
    ({"title": None}, "title"), ({"scan_nb": "x"}, "scan_nb"), ({"filename": "rel/x.h5"}, "absolute"),
    ({"filename": "/tmp/../etc/x.h5"}, ".."), ({"start_time": "yesterday"}, "ISO 8601"),
    ({"npoints": float("nan")}, "npoints"), ({"writer_options": {"chunk_options": {"bogus": 1}}}, "chunk options"),
])
def test_malformed_scan_info_is_rejected_with_a_reason(change, message):
    info = scan_info(ScanSpec("s", "/tmp/x.h5", 1, 3))
    info.update(change)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        validate(info)


def test_missing_keys_are_named():
    info = scan_info(ScanSpec("s", "/tmp/x.h5", 1, 3))
    del info["scan_meta_categories"], info["acquisition_chain"]
    with pytest.raises(ValueError, match="acquisition_chain.*scan_meta_categories"):
        validate(info)


def test_entries_are_numbered_by_sorted_top_master():
    info = scan_info(ScanSpec("s", "/tmp/x.h5", 12, 3))
    info["acquisition_chain"]["a_first"] = {"devices": ["1003:diode_ctrl"]}
    info["acquisition_chain"]["axis"]["devices"].remove("1003:diode_ctrl")
    plan = ScanPlan(info, SaveOptions())
    assert plan.entries == {"a_first": "12.1", "axis": "12.2"}


def test_align_columns():
    assert align_columns([["1_ascan:", "OFF", "Finished succesfully"], ["12_loopscan:", "FAULT", "Stop requested"]]) == [
        "    1_ascan:   OFF Finished succesfully", "12_loopscan: FAULT Stop requested      "]
    assert align_columns([["a:", "b"]]) == ["a: b"]


def test_separate_scan_file_name():
    from nxpar.nexus.scan_info import scan_file

    info = {"filename": "/tmp/scans/demo/data.h5", "images_path": "/tmp/scans/demo/scan0012/{img_acq_device}_",
            "writer_options": {"separate_scan_files": True}}
    assert scan_file(info) == "/tmp/scans/demo/scan0012/bliss_master.h5"
    info["writer_options"]["separate_scan_files"] = None
    assert scan_file(info) == "/tmp/scans/demo/data.h5"


def _spec(detector_shape=(), scan_shape=(), chunks=(4,)):
    from nxpar.protocol.steps import ArraySpec
    return ArraySpec("/1.1/x", "float64", detector_shape, chunks, "none", float("nan"), scan_shape=scan_shape)


@pytest.mark.parametrize("lo,hi,grid", [(0, 12, (3, 4)), (1, 11, (3, 4)), (5, 7, (3, 4)), (3, 9, (5, 3)),
                                        (2, 20, (2, 3, 4)), (0, 14, (3, 4))])
def test_grid_runs_cover_points_in_c_order(lo, hi, grid):
    import numpy as np

    from nxpar.writers.layout import runs
    shape = (max(grid[0], -(-hi // int(np.prod(grid[1:])))),) + grid[1:]
    flat_index = np.arange(np.prod(shape)).reshape(shape)
    order = []
    for start, count in runs(lo, hi, shape):
        order += list(flat_index[tuple(slice(s, s + c) for s, c in zip(start, count))].ravel())
    assert order == list(range(lo, hi))  # slabs in C order, together exactly [lo, hi), no overlap


def test_grid_grows_along_the_slow_axis_only():
    from nxpar.writers.layout import initial_shape, scan_extent
    spec = _spec(scan_shape=(3, 4), chunks=(3, 4))
    assert initial_shape(spec) == (3, 4)
    assert scan_extent(spec, (3, 4), 12) == (3, 4)
    assert scan_extent(spec, (3, 4), 13) == (4, 4)
    flat = _spec()
    assert initial_shape(flat) == (0,) and scan_extent(flat, (5,), 9) == (9,)


def test_ragged_rows_are_padded_with_the_fill_value():
    import numpy as np

    from nxpar.writers.layout import as_rows, initial_shape
    spec = _spec(detector_shape=(-1,), chunks=(4, 512))
    assert initial_shape(spec) == (0, 0) and spec.variable and spec.row_nbytes == 8
    rows = as_rows([np.array([1.0]), np.array([2.0, 3.0, 4.0])], spec)
    np.testing.assert_array_equal(rows, [[1, np.nan, np.nan], [2, 3, 4]])
    assert as_rows([np.array([1.0])], spec, (5,)).shape == (1, 5)
    with pytest.raises(ValueError, match="expected"):
        as_rows([np.zeros((2, 2))], spec)


def test_keepshape_plans_grid_datasets():
    info = scan_info(ScanSpec("s", "/tmp/x.h5", 1, 12, image_shape=(8, 8), grid=(4, 3)))
    flat = ScanPlan(info, SaveOptions())
    assert flat.grid == (3, 4) and flat.saved_grid == ()  # the grid is known (plots), datasets are flat
    flat_image = flat.array_spec("cam:image", "uint16", (8, 8))
    assert flat_image.scan_shape == () and flat_image.chunks == (12, 8, 8) and "interpretation" not in \
        flat.array_spec("diode_ctrl:diode", "float64", ()).attrs
    plan = ScanPlan(info, SaveOptions(flat=False))
    assert plan.grid == plan.saved_grid == (3, 4)
    image = plan.array_spec("cam:image", "uint16", (8, 8))
    assert image.chunks == (1, 4, 8, 8) and image.scan_shape == (3, 4) and image.rows_per_chunk == 4
    assert plan.grid_axes() == {"1.1": ["axis:roby", "axis:robx"]}  # slow dimension first
    diode = plan.array_spec("diode_ctrl:diode", "float64", ())
    assert diode.chunks == (3, 4) and diode.attrs["interpretation"] == "image"
    info["npoints2"] = 0  # a dimension unknown: written flat
    assert ScanPlan(info, SaveOptions(flat=False)).saved_grid == ()


def test_sample_tree_only_for_the_esrf_policy():
    from nxpar.nexus.esrf_metadata import sample_tree
    snapshot = {"Sample_name": "x", "SamplePositioners_name": "a", "InstrumentSource_mode": "m"}
    assert sample_tree({"data_policy": "None", "dataset_metadata_snapshot": snapshot}) == {}
    tree = sample_tree({"data_policy": "esrf", "dataset_metadata_snapshot": snapshot})
    assert tree == {"sample": {"@NX_class": "NXsample", "name": "x"}}


@pytest.mark.parametrize("scan_shape,detector,dtype,options,chunks,scheme", [
    ((4,), (16, 16), "uint16", {}, (4, 16, 16), "none"),  # below compression_limit_nbytes: one chunk, no filter
    ((4,), (256, 256), "uint16", {"chunk_nbytes": 1 << 18, "chunk_split": 2}, (2, 128, 128), "none"),
    ((100,), (2048, 2048), "uint16", {}, (2, 512, 512), "lz4-bitshuffle"),  # frames default to bitshuffle-LZ4
    ((0,), (16, 16), "uint16", {"compression_scheme": "gzip"}, (512, 16, 16), "none"),
    ((3, 5), (256, 256), "uint16", {"chunk_nbytes": 1 << 18, "chunk_split": 2}, (1, 1, 128, 128),
     "lz4-bitshuffle"),  # a row of 5: 1 frame per chunk (5 has no divisor 2 or 3)
    ((3, 4), (16, 16), "uint16", {}, (1, 4, 16, 16), "none"),  # keepshape: a chunk inside one grid row
    ((3, 6), (16, 16), "uint16", {"chunk_nbytes": 2048, "chunk_split": 1, "compression_limit_nbytes": 1},
     (1, 3, 16, 16), "lz4-bitshuffle"),
])
def test_frames_follow_blisswriter_chunk_options(scan_shape, detector, dtype, options, chunks, scheme):
    from nxpar.nexus.chunking import ChunkOptions, dataset_layout
    opts = ChunkOptions.from_scan_info({"writer_options": {"chunk_options": options}})
    assert dataset_layout(scan_shape, detector, dtype, opts) == (chunks, scheme)


def test_k_frames_per_chunk_have_one_owner_rank():
    from nxpar.nexus.chunking import ChunkOptions, dataset_layout
    from nxpar.protocol.steps import ArraySpec
    options = ChunkOptions(chunk_nbytes=3 * 64 * 64 * 2, chunk_split=1)
    chunks, scheme = dataset_layout((10,), (64, 64), "uint16", options)
    assert chunks == (3, 64, 64)
    spec = ArraySpec("/x", "uint16", (64, 64), chunks, scheme, 0)
    assert spec.rows_per_chunk == 3
    for size in (1, 2, 3):  # rows 2..9 (a step starting inside a chunk): shares cut on chunk boundaries only
        shares = [share_of_rows(2, 10, spec.rows_per_chunk, r, size) for r in range(size)]
        assert all(lo % 3 == 0 or lo == 2 for lo, hi in shares if hi > lo)
        assert all(hi % 3 == 0 or hi == 10 for lo, hi in shares if hi > lo)
        assert sorted(i for lo, hi in shares for i in range(lo, hi)) == list(range(2, 10))


def _plotted(name, device_type, shape, master=-1, dtype="float64"):
    from nxpar.nexus.channel_mapping import ChannelMap
    from nxpar.nexus.plots import Plotted
    m = ChannelMap(name, device_type=device_type, device_name=name.split(":")[-1], unique_name=name.split(":")[-1],
                   master_index=master, data_name="value" if master >= 0 else "data")
    return Plotted(name, m, len(shape), dtype, shape)


def test_plots_split_by_shape_and_name_like_blisswriter():
    """plotinit(spectrum_det0, roi_a_det1, sdiode): (scan, detector) shape groups, mca suffix repeated → index."""
    from nxpar.nexus.plots import plot_nodes
    items = [_plotted("axis:robz", "positioner", (), master=0), _plotted("simu:det0", "mca", (1024,)),
             _plotted("simu:det1_roi_a", "mca", ()), _plotted("ctrl:sdiode", "samplingcounter", ())]
    nodes = plot_nodes("1.1", items, ["simu:det0", "det1_roi_a", "sdiode"], (), False, {}, [])
    groups = {n.path: n.attrs for n in nodes if n.op == "group"}
    # NXdata sorted by their sorted signal names: ('det0',) < ('det1_roi_a', 'sdiode')
    assert groups["/1.1/plotselect_mca1"] == {"NX_class": "NXdata", "signal": "det0", "axes": ["robz", "datadim0"]}
    assert groups["/1.1/plotselect_mca2"]["signal"] == "det1_roi_a"
    assert groups["/1.1/plotselect_mca2"]["auxiliary_signals"] == ["sdiode"]
    assert groups["/1.1/plotselect_mca2"]["axes"] == ["robz"]
    links = {n.path: n.target for n in nodes if n.op == "softlink"}
    assert links["/1.1/plotselect"] == "/1.1/plotselect_mca2"  # the last one is the default
    assert links["/1.1/plotselect_mca1/robz"] == "/1.1/instrument/robz/value"
    datadim = next(n for n in nodes if n.path == "/1.1/plotselect_mca1/datadim0")
    np.testing.assert_array_equal(datadim.value, np.arange(1024))


def test_plots_of_a_flat_mesh_are_grids_even_when_incomplete():
    """7 of 12 points of a 4x3 mesh: a (3, 4) VDS, one mapping per grid row; axes linear fits of the averages."""
    from nxpar.nexus.plots import linear_axis, plot_nodes
    items = [_plotted("axis:robx", "positioner", (), master=0), _plotted("axis:roby", "positioner", (), master=1),
             _plotted("ctrl:sdiode", "samplingcounter", ())]
    values = {"axis:robx": np.array([0, 1 / 3, 2 / 3, 1]), "axis:roby": np.array([0, 0.5, np.nan])}
    nodes = plot_nodes("1.1", items, ["sdiode"], (3, 4), False, values, ["axis:roby", "axis:robx"])
    vds = next(n for n in nodes if n.op == "vds_map")
    assert vds.path == "/1.1/plotselect/sdiode" and vds.attrs == {"interpretation": "image"}
    assert vds.value["shape"] == (3, 4) and len(vds.value["sources"]) == 3 and np.isnan(vds.value["fillvalue"])
    assert vds.value["sources"][1] == (".", "/1.1/instrument/sdiode/data", {"start": (1, 0), "count": (1, 4)},
                                       {"start": (4,), "count": (4,)})
    group = next(n for n in nodes if n.op == "group")
    assert group.attrs["axes"] == ["roby", "robx"]
    roby = next(n for n in nodes if n.path.endswith("/roby"))
    np.testing.assert_allclose(roby.value, [0, 0.5, 1], atol=1e-12)  # the missing row extrapolated
    np.testing.assert_allclose(linear_axis(np.array([0.5, 0.5, 0.5])), [0.5, 0.5, 0.5], atol=1e-12)
    grown = plot_nodes("1.1", items, ["sdiode"], (3, 4), False, {**values, "axis:roby": np.arange(4) / 2},
                       ["axis:roby", "axis:robx"])
    assert next(n for n in grown if n.op == "vds_map").value["shape"] == (4, 4)  # overrun: the slow axis grows


# -- issue 11: steps sized by bytes and time (rows_due) ----------------------------------------------
from nxpar.driver.row_writes import rows_due  # noqa: E402

MB = 1 << 20


def test_small_rows_wait_for_their_chunk_then_go_in_one_step():
    """kHz scalars: nothing while the chunk fills and the delay runs; at the delay (or seal) all of it."""
    assert rows_due(0, 5000, 131072, 8, 16 * MB, flush_all=False) == 0
    assert rows_due(0, 5000, 131072, 8, 16 * MB, flush_all=True) == 5000
    assert rows_due(5000, 131072 + 10, 131072, 8, 16 * MB, flush_all=False) == 131072  # a chunk filled


def test_rows_below_the_minimum_step_wait_unless_flushed():
    """A step has a fixed cost: 4x4 frames (32 B, a chunk each) are gathered up to 1 MiB or the delay."""
    assert rows_due(0, 1000, 1, 32, 16 * MB, flush_all=False, min_bytes=MB) == 0
    assert rows_due(0, 1000, 1, 32, 16 * MB, flush_all=True, min_bytes=MB) == 1000
    assert rows_due(0, 40000, 1, 32, 16 * MB, flush_all=False, min_bytes=MB) == 40000


@pytest.mark.parametrize("submitted,available,chunk,row,budget,expected", [
    (0, 100, 1, 2 * MB, 16 * MB, 8),          # big frames: the byte budget cuts, 8 frames of 2 MiB
    (3, 100, 1, 2 * MB, 16 * MB, 11),
    (0, 100, 8, 2 * MB, 16 * MB, 8),          # 8 frames per chunk: one chunk
    (0, 100, 8, 2 * MB, 4 * MB, 8),           # a budget below one chunk still writes one whole chunk
    (5, 100, 8, 2 * MB, 32 * MB, 16),         # the cut falls on a chunk boundary
    (0, 5, 8, 2 * MB, 16 * MB, 0),            # a partial chunk waits
])
def test_big_rows_are_cut_by_the_byte_budget_on_chunk_boundaries(submitted, available, chunk, row, budget, expected):
    assert rows_due(submitted, available, chunk, row, budget, flush_all=False) == expected


def test_nothing_pending_nothing_due():
    assert rows_due(7, 7, 1, 8, MB, flush_all=True) == 7
