"""Real Redis + blissdata + mpirun: values read back equal the published values (issue 4)."""
from __future__ import annotations

import threading

import h5py
import numpy as np
import pytest

from launch.simulate import ScanPublisher, ScanSpec
from tests.helpers import assert_file_matches, run_scan, start_scan, wait_scan_done, wait_scan_exists


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_scan_values_read_back_for_n_ranks(services, stack, data_dir, ranks):
    """23 points: not divisible by any writer count; scalars, MCA and 2D frames. BLISS's chunk options
    give 2 frames per chunk, compressed: each chunk has one owner rank in the collective filtered writes."""
    proxy = services.get(ranks)[f"n{ranks}"]
    spec = ScanSpec(f"n{ranks}", str(data_dir / "data.h5"), 1, 23, image_shape=(48, 40), mca_channels=64,
                    chunk_options={"chunk_nbytes": 2 * 48 * 40 * 2, "chunk_split": 1, "compression_limit_nbytes": 1})
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, batch=3)
    assert_file_matches(pub, 23)
    assert list(proxy.scan_url(spec.name)) == [f"{spec.filename}::/1.1"]
    with h5py.File(spec.filename, "r", locking=False) as f:
        image = f["1.1/instrument/image/data"]
        assert image.chunks == (2, 48, 40)
        assert "32008" in image._filters  # bitshuffle-LZ4 by default for frames


def test_unknown_length_scan(services, stack, data_dir):
    proxy = services.get(3)["n3"]
    spec = ScanSpec("n3", str(data_dir / "u.h5"), 7, 17, image_shape=(16, 16), publish_npoints=False)
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, batch=2)
    assert_file_matches(pub, 17)


def test_aborted_scan_keeps_received_points(services, stack, data_dir):
    """USER_ABORT after 9 of 30 points: exactly 9 rows, no padding; writer status SUCCEEDED."""
    proxy = services.get(3)["n3"]
    spec = ScanSpec("n3", str(data_dir / "a.h5"), 8, 30, image_shape=(16, 16))
    pub = start_scan(proxy, stack.env["REDIS_DATA_URL"], spec, 9, batch=3)
    pub.stop_close("USER_ABORT")  # close() seals the streams, stop() is skipped as in BLISS
    assert wait_scan_done(proxy, spec.name) == "OFF"
    assert_file_matches(pub, 9)
    with h5py.File(spec.filename, "r", locking=False) as f:
        assert f["8.1/end_reason"][()] == b"USER_ABORT"


def test_several_scans_in_a_row_same_file(services, stack, data_dir):
    proxy = services.get(2)["n2"]
    filename = str(data_dir / "dataset.h5")
    pubs = [run_scan(proxy, stack.env["REDIS_DATA_URL"], ScanSpec("n2", filename, nb, 5 + nb, image_shape=(8, 8)), batch=3)
            for nb in (1, 2, 3)]
    for pub in pubs:
        assert_file_matches(pub, pub.spec.npoints)
    with h5py.File(filename, "r", locking=False) as f:
        assert sorted(f) == ["1.1", "2.1", "3.1"]
        assert f.attrs["default"] == "3.1"


def test_existing_entry_is_never_overwritten(services, stack, data_dir):
    proxy = services.get(2)["n2"]
    filename = str(data_dir / "dup.h5")
    run_scan(proxy, stack.env["REDIS_DATA_URL"], ScanSpec("n2", filename, 4, 3, image_shape=(8, 8)), batch=3)
    spec = ScanSpec("n2", filename, 4, 3, image_shape=(8, 8))
    spec_name = spec.name
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    pub.run()
    assert wait_scan_done(proxy, spec_name) == "FAULT"
    assert proxy.scan_state_reason(spec_name) == f"Scan 4.1 already exists in {filename}"


def test_two_sessions_at_once(services, stack, data_dir):
    """One server, two devices, two scans written concurrently: both complete and correct."""
    devs = services.get(3, ("sa", "sb"))
    url = stack.env["REDIS_DATA_URL"]
    pubs = [ScanPublisher(url, ScanSpec(s, str(data_dir / f"{s}.h5"), 1, 40, image_shape=(32, 32))) for s in ("sa", "sb")]
    for s, pub in zip(("sa", "sb"), pubs):
        wait_scan_exists(devs[s], pub.spec.name)
    threads = [threading.Thread(target=pub.run, kwargs={"batch": 2}) for pub in pubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, pub in zip(("sa", "sb"), pubs):
        assert wait_scan_done(devs[s], pub.spec.name) == "OFF", devs[s].scan_state_reason(pub.spec.name)
        assert_file_matches(pub, 40)


@pytest.mark.parametrize("scheme,filter_id", [("none", None), ("gzip", 1), ("gzip-byteshuffle", 1),
                                               ("blosc-zstd", 32001), ("lz4-bitshuffle", 32008)])
def test_compression_selected_by_writer_options(services, stack, data_dir, scheme, filter_id):
    proxy = services.get(2)["n2"]
    spec = ScanSpec("n2", str(data_dir / f"{scheme}.h5"), 1, 6, image_shape=(64, 64),
                    chunk_options={"compression_scheme": scheme, "compression_limit_nbytes": 1})
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, batch=3)
    assert_file_matches(pub, 6)
    with h5py.File(spec.filename, "r", locking=False) as f:
        filters = f["1.1/instrument/image/data"]._filters
        if filter_id is None:
            assert not filters
        else:
            assert str(filter_id) in filters or (filter_id == 1 and "gzip" in filters), filters


def test_tree_matches_spec_example(services, stack, data_dir):
    """Paths, NX_class, dtypes, shapes and key attributes of the tree BLISS expects (plain 2D stream variant)."""
    proxy = services.get(2)["n2"]
    spec = ScanSpec("n2", str(data_dir / "tree.h5"), 1, 3, image_shape=(128, 128), mca_channels=1024)
    run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, batch=3)
    expected_groups = {
        "1.1": "NXentry", "1.1/instrument": "NXinstrument", "1.1/measurement": "NXcollection",
        "1.1/scan_parameters": "NXparameters", "1.1/writer": "NXnote", "1.1/plotselect": "NXdata",
        "1.1/instrument/positioners_start": "NXcollection", "1.1/instrument/positioners": "NXcollection",
        "1.1/instrument/positioners_dial_start": "NXcollection", "1.1/instrument/positioners_end": "NXcollection",
        "1.1/instrument/positioners_dial_end": "NXcollection", "1.1/instrument/robx": "NXpositioner",
        "1.1/instrument/elapsed_time": "NXdetector", "1.1/instrument/epoch": "NXdetector",
        "1.1/instrument/diode": "NXdetector", "1.1/instrument/simu1_det0": "NXdetector",
        "1.1/instrument/image": "NXdetector",
    }
    expected_datasets = {
        "1.1/instrument/robx/value": ("float64", (3,)), "1.1/instrument/elapsed_time/data": ("float64", (3,)),
        "1.1/instrument/epoch/data": ("float64", (3,)), "1.1/instrument/diode/signal": ("float64", (3,)),
        "1.1/instrument/simu1_det0/spectrum": ("uint32", (3, 1024)),
        "1.1/instrument/simu1_det0/elapsed_time": ("float64", (3,)),
        "1.1/instrument/image/data": ("uint16", (3, 128, 128)),
    }
    expected_links = {
        "1.1/measurement/robx": "/1.1/instrument/robx/value", "1.1/measurement/diode": "/1.1/instrument/diode/signal",
        "1.1/measurement/simu1_det0": "/1.1/instrument/simu1_det0/spectrum",
        "1.1/measurement/simu1_det0_elapsed_time": "/1.1/instrument/simu1_det0/elapsed_time",
        "1.1/measurement/elapsed_time": "/1.1/instrument/elapsed_time/data",
        "1.1/measurement/epoch": "/1.1/instrument/epoch/data", "1.1/measurement/image": "/1.1/instrument/image/data",
        "1.1/instrument/positioners/robx": "/1.1/instrument/robx/value",
        "1.1/plotselect/diode": "/1.1/instrument/diode/signal", "1.1/plotselect/robx": "/1.1/instrument/robx/value",
    }
    with h5py.File(spec.filename, "r", locking=False) as f:
        assert f.attrs["NX_class"] == "NXroot" and f.attrs["default"] == "1.1"
        assert f.attrs["creator"] == "blissdata" and "create_version" in f.attrs
        for path, nx in expected_groups.items():
            assert f[path].attrs["NX_class"] == nx, path
        for path, (dtype, shape) in expected_datasets.items():
            assert (str(f[path].dtype), f[path].shape) == (dtype, shape), path
        for path, target in expected_links.items():
            assert f.get(path, getlink=True).path == target, path
        e = f["1.1"]
        assert e.attrs["default"] == "plotselect"
        assert e["plotselect"].attrs["signal"] == "diode" and list(e["plotselect"].attrs["axes"]) == ["robx"]
        assert e["title"][()].decode() == "ascan robx 0 1 3 0.1"
        assert e["end_reason"][()] == b"SUCCESS" and e["writer/status"][()] == b"SUCCEEDED"
        assert e["scan_parameters/count_time"][()] == 0.1 and e["scan_parameters/count_time"].attrs["units"] == "s"
        assert e["instrument/name"][()] == b"ESRF-id00" and e["instrument/name"].attrs["short_name"] == "id00"
        assert e["instrument/robx/value"].attrs["units"] == "mm"
        assert e["instrument/positioners_start/roby"][()] == 2.5
        assert e["instrument/positioners_start/roby"].attrs["units"] == "mm"
        assert e["instrument/positioners_end/robx"][()] == 1.0
        assert e["instrument/diode/type"][()] == b"samplingcounter" and e["instrument/diode/mode"][()] == b"MEAN"
        assert e.get("instrument/diode/data", getlink=True).path == "signal"  # relative (docs/interface.md §4.3)
        assert e.get("instrument/robx/data", getlink=True) is None  # positioners: alias 'value' = the dataset
        assert e.get("instrument/elapsed_time/data", getlink=True).__class__ is h5py.HardLink
        assert e["instrument/simu1_det0/type"][()] == b"mca"
        assert e["instrument/simu1_det0/spectrum"].attrs["interpretation"] == "spectrum"
        assert e["instrument/image/data"].attrs["interpretation"] == "image"
        for key in ("start_time", "end_time"):
            assert e[key][()].decode()[:4].isdigit()


def test_overlapping_scans_share_one_file(services, stack, data_dir):
    """The next scan of a dataset starts while the previous one is still finalising: one shared handle."""
    proxy = services.get(3)["n3"]
    filename = str(data_dir / "overlap.h5")
    url = stack.env["REDIS_DATA_URL"]
    first = ScanPublisher(url, ScanSpec("n3", filename, 21, 12, image_shape=(16, 16)))
    second = ScanPublisher(url, ScanSpec("n3", filename, 22, 9, image_shape=(16, 16)))
    for pub in (first, second):
        wait_scan_exists(proxy, pub.spec.name)
    first.prepare_start()
    second.prepare_start()
    first.send(6, batch=2)
    second.send(9, batch=3)
    first.send(6, batch=2)
    first.stop_close()
    second.stop_close()
    for pub in (first, second):
        assert wait_scan_done(proxy, pub.spec.name) == "OFF", proxy.scan_state_reason(pub.spec.name)
        assert_file_matches(pub, pub.spec.npoints)


def test_collective_metadata_operations_are_enabled():
    """h5py does not wrap them: nxpar sets them on the real HDF5 library through ctypes."""
    import ctypes

    from mpi4py import MPI

    from nxpar.writers.file_access import _hdf5_lib, ctypes_hid

    lib = _hdf5_lib()
    assert "hdf5" in lib._name
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fapl_mpio(MPI.COMM_SELF, MPI.INFO_NULL)
    for setter, getter in (("H5Pset_all_coll_metadata_ops", "H5Pget_all_coll_metadata_ops"),
                           ("H5Pset_coll_metadata_write", "H5Pget_coll_metadata_write")):
        flag = ctypes.c_bool(False)
        getattr(lib, getter)(ctypes_hid(fapl.id), ctypes.byref(flag))
        assert flag.value is False
        getattr(lib, setter)(ctypes_hid(fapl.id), 1)
        getattr(lib, getter)(ctypes_hid(fapl.id), ctypes.byref(flag))
        assert flag.value is True


@pytest.mark.parametrize("ranks", [1, 3])
def test_variable_length_samples_are_padded(services, stack, data_dir, ranks):
    """A sampling counter in SAMPLES mode (shape (-1,)): 1 to 5 samples per point, padded with NaN;
    the detector dimension is the longest row, agreed between the writer ranks."""
    proxy = services.get(ranks)[f"n{ranks}"]
    spec = ScanSpec(f"n{ranks}", str(data_dir / "samples.h5"), 11, 23, image_shape=None, mca_channels=None,
                    samples=True)
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, batch=3)
    assert_file_matches(pub, 23)
    with h5py.File(spec.filename, "r", locking=False) as f:
        samples = f["11.1/instrument/diode/samples"]
        assert samples.shape == (23, 5) and samples.maxshape == (None, None)
        assert f["11.1/measurement/diode_samples"].shape == (23, 5)


@pytest.mark.parametrize("points,batch", [(12, 5), (7, 2), (15, 4)])
def test_keepshape_writes_the_grid(services, stack, data_dir, points, batch):
    """keepshape: a 4x3 mesh is written as (3, 4) datasets in C order; an aborted mesh leaves the
    fill value in the missing points; more points than planned grow the slow axis."""
    proxy = services.get(3, ("keepshape",), keepshape=True)["keepshape"]
    spec = ScanSpec("keepshape", str(data_dir / "mesh.h5"), 1, points, image_shape=(8, 6), mca_channels=16,
                    grid=(4, 3), samples=True)
    pub = start_scan(proxy, stack.env["REDIS_DATA_URL"], spec, points, batch=batch)
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name) == "OFF", proxy.scan_state_reason(spec.name)
    assert_file_matches(pub, points, keepshape=True)
    with h5py.File(spec.filename, "r", locking=False) as f:
        e = f["1.1"]
        slow = max(3, -(-points // 4))
        assert e["instrument/image/data"].shape == (slow, 4, 8, 6)
        assert e["instrument/image/data"].chunks == (1, 4, 8, 6)  # one grid row per chunk
        assert e["instrument/diode/signal"].attrs["interpretation"] == "image"
        plot = e["plotselect"]
        assert plot.attrs["signal"] == "diode" and list(plot.attrs["axes"]) == ["roby", "robx"]
        # averaged over the rows received, then a linear fit (rows never received are extrapolated)
        np.testing.assert_allclose(plot["robx"][()], [0, 1 / 3, 2 / 3, 1], atol=1e-12)
        np.testing.assert_allclose(plot["roby"][()], np.arange(slow) / 2, atol=1e-12)
        assert plot["diode"].shape == (slow, 4)


def test_stream_reader_reads_shares_that_start_inside_a_batch(stack):
    """Writer ranks read straight from Redis: frames published 3 per event, shares cut anywhere,
    every combination equals the published rows (real Redis, no writer service)."""
    from blissdata.redis_engine.store import DataStore
    from blissdata.streams.default import Stream

    from nxpar.protocol.steps import StreamSource
    from nxpar.sources.redis_reader import StreamReader

    url = stack.env["REDIS_DATA_URL"]
    scan = DataStore(url).create_scan({"name": "reader", "number": 1, "data_policy": "None", "session": "reader"},
                                      info={"name": "reader"})
    frames = np.arange(10 * 4 * 3, dtype="uint16").reshape(10, 4, 3)
    stream = scan.create_stream(Stream.make_definition("cam:image", "uint16", (4, 3)))
    counts = scan.create_stream(Stream.make_definition("diode", "float64", ()))
    scan.prepare()
    scan.start()
    for lo in range(0, 10, 3):
        stream.send(frames[lo:lo + 3])
    counts.send(np.arange(10.0))
    stream.join()
    counts.join()
    reader = StreamReader()
    source = StreamSource(url, scan.key, "cam:image")
    for start, stop in [(0, 10), (4, 8), (1, 2), (3, 6), (9, 10), (5, 10)]:
        np.testing.assert_array_equal(reader.read(source, start, stop), frames[start:stop], err_msg=f"{start}:{stop}")
    assert reader.read(source, 4, 8).base is reader._buffers[(scan.key, "cam:image")]  # the direct path
    # several streams in one pipelined round trip (what one WriteBatch does): each equals its rows
    reader.forget(scan.key)
    got = reader.read_many([(source, 2, 9), (StreamSource(url, scan.key, "diode"), 3, 10)])
    np.testing.assert_array_equal(got[0], frames[2:9])
    np.testing.assert_array_equal(got[1], np.arange(3.0, 10.0))
    scan.stop()
    scan.close()


def test_steps_cut_by_a_small_byte_budget_keep_every_value(services, stack, data_dir):
    """Issue 11: with 64 KiB per writer rank and step, 2 writers, chunks of 2 frames, the 200 frames go
    in many batches cut on chunk boundaries, scalars and spectra gathered beside them: every value
    read back equals the published one, and the device reported the budget it was given."""
    session = "small_steps"
    proxy = services.get(3, (session,), step_mb_per_writer=0.0625, max_write_delay=0.05)[session]
    spec = ScanSpec(session, str(data_dir / "small.h5"), 1, 200, image_shape=(64, 64), mca_channels=256,
                    chunk_options={"chunk_nbytes": 2 * 64 * 64 * 2, "chunk_split": 1})
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, batch=5)
    assert_file_matches(pub, 200)
    with h5py.File(spec.filename, "r", locking=False) as f:
        assert f["1.1/instrument/image/data"].chunks == (2, 64, 64)
    log = (stack.rundir / f"service_w_{session}.log").read_text()
    assert "steps of 64 KiB per writer rank (at least 64 KiB or 0.05 s)" in log
