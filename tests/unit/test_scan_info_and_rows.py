"""scan_info parsed once into typed options (nexus/scan_info.py), the plans built from them, and
how pending rows are cut into steps (driver/row_writes.py)."""
from __future__ import annotations

import pytest

from launch.simulate import ScanSpec, scan_info
from nxpar.driver.row_writes import rows_due
from nxpar.nexus.lima_plan import LimaMode, lima_mode
from nxpar.nexus.plan import ScanPlan
from nxpar.nexus.scan_info import parse
from nxpar.protocol.options import SaveOptions


def test_scan_info_is_parsed_into_options():
    info = scan_info(ScanSpec("s", "/data/x.h5", 7, 12, grid=(4, 3), chunk_options={"compression_scheme": "LZ4"}))
    options = parse(info)
    assert (options.filename, options.npoints, options.grid) == ("/data/x.h5", 12, (3, 4))
    assert options.chunk_options.compression_scheme == "lz4-bitshuffle"  # an alias, checked and named once


@pytest.mark.parametrize("options,message", [
    ({"compression_scheme": "zip"}, "Unknown HDF5 compression 'zip'"),
    ({"chunk_split": 0}, "chunk_split must be > 0"),
    ({"bogus": 1}, "Unknown chunk options"),
])
def test_bad_chunk_options_fail_at_parse_time(options, message):
    info = scan_info(ScanSpec("s", "/data/x.h5", 7, 12, chunk_options=options))
    with pytest.raises(ValueError, match=message):
        parse(info)


def test_the_plan_makes_array_specs_from_its_own_options():
    info = scan_info(ScanSpec("s", "/data/x.h5", 7, 1000, chunk_options={"compression_scheme": "gzip"}))
    plan = ScanPlan(info, SaveOptions())
    spec = plan.array_spec("cam:image", "uint16", (64, 64))
    assert spec.path == "/7.1/instrument/image/data" and spec.compression == "gzip"
    assert spec.detector_shape == (64, 64) and spec.scan_shape == () and plan.entry_of("cam:image") == "7.1"
    with pytest.raises(KeyError, match="ghost"):
        plan.entry_of("ghost")


@pytest.mark.parametrize("lima_info,options,mode", [
    ({}, SaveOptions(), LimaMode.NONE),
    ({"file_path": "/d/f.h5", "frame_per_file": 10, "file_format": "HDF5BS"}, SaveOptions(), LimaMode.VDS),
    ({"file_path": "/d/f.edf", "frame_per_file": 10, "file_format": "EDF"}, SaveOptions(), LimaMode.URIS),
    ({"file_path": "/d/f.edf", "frame_per_file": 10, "file_format": "EDF"},
     SaveOptions(allow_external_nonhdf5=True), LimaMode.EXTERNAL),
    ({"file_path": "/d/f.h5", "frame_per_file": 10, "file_format": "HDF5"},
     SaveOptions(allow_external_hdf5=False, copy_non_external=True), LimaMode.COPY),
])
def test_lima_storage_follows_the_device_options(lima_info, options, mode):
    assert lima_mode(lima_info, options) == mode


KB = 1024


@pytest.mark.parametrize("submitted,available,chunk,row,budget,flush_all,min_bytes,expected", [
    (0, 0, 1, 8, KB, False, 0, 0),            # nothing published
    (0, 100, 10, 8, 1 << 20, False, 0, 100),  # whole chunks, all of them
    (0, 105, 10, 8, 1 << 20, False, 0, 100),  # the partly filled chunk waits ...
    (0, 105, 10, 8, 1 << 20, True, 0, 105),   # ... unless sealed or waited long enough
    (0, 100, 10, 8, 400, False, 0, 50),       # the byte budget cuts at a chunk boundary
    (0, 100, 10, 1000, 10, False, 0, 10),     # a budget below one chunk still writes one chunk
    (0, 100, 1, 8, 1 << 20, False, 1 << 20, 0),  # small rows gather up to min_bytes ...
    (0, 100, 1, 8, 1 << 20, True, 1 << 20, 100),  # ... for at most the max delay
    (40, 100, 10, 8, 1 << 20, False, 0, 100),
])
def test_rows_due_by_bytes_and_time(submitted, available, chunk, row, budget, flush_all, min_bytes, expected):
    assert rows_due(submitted, available, chunk, row, budget, flush_all, min_bytes) == expected
