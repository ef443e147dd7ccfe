"""Lima frames as virtual datasets / references, and scan sequences (docs/interface.md §4.5, §4.7), on the real stack."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from blissdata.streams.default import Stream
from blissdata.streams.lima import LimaStream
from blissdata.streams.scan_sequence import ScanStream

from launch.simulate import ScanPublisher, ScanSpec, realistic_frames, scan_info
from tests.helpers import wait_scan_done, wait_scan_exists


def lima_scan(store, session: str, filename: str, nb: int, saving: dict | None, extra_info=None):
    """A scan whose only 2D channel is a Lima stream (JSON status events), like BLISS with a Lima detector."""
    spec = ScanSpec(session, filename, nb, 5, image_shape=None, mca_channels=None)
    info = scan_info(spec)
    info["devices"]["1005:lima_simulator"] = {"name": "lima_simulator", "type": "lima",
                                             "channels": ["lima_simulator:image"]}
    info["acquisition_chain"]["axis"]["devices"].append("1005:lima_simulator")
    info["channels"]["lima_simulator:image"] = {"device": "1005:lima_simulator", "dim": 2}
    info["nexuswriter"]["devices"]["lima_simulator:image"] = {"device_info": {"type": "lima"}, "device_type": "lima"}
    info.update(extra_info or {})
    identity = {"name": "ascan", "number": nb, "data_policy": "None", "session": session, "path": filename}
    scan = store.create_scan(identity, info=info)
    scalars = {n: scan.create_stream(Stream.make_definition(n, "float64", ()))
               for n in ("axis:robx", "timer:elapsed_time", "timer:epoch", "diode_ctrl:diode")}
    lima = scan.create_stream(LimaStream.make_definition(
        "lima_simulator:image", "uint16", (32, 24), server_url="id00/limaccds/simulator1", buffer_max_number=100,
        frames_per_acquisition=5, acquisition_offset=0, saving=saving or {}))
    return scan, info, scalars, lima


def run_lima(scan, info, scalars, lima, n=5, saved: int | None = None):
    """saved: Lima saved only frames 0..saved-1 (default: all)."""
    scan.info = info
    scan.prepare()
    scan.start()
    for i in range(n):
        for s in scalars.values():
            s.send(np.array([float(i)]))
        lima.send({"last_index": i, "last_index_saved": i if saved is None else min(i, saved - 1)})
    scan.stop()
    info = dict(scan.info)
    info["end_reason"] = "SUCCESS"
    scan.info = info
    scan.close()


def write_lima_scan(proxy, url: str, session: str, filename: str, nb: int, saving: dict | None,
                    saved: int | None = None, extra_info: dict | None = None) -> str:
    """A whole Lima scan as BLISS runs it, through the device; returns the scan's final state."""
    from blissdata.redis_engine.store import DataStore

    scan, info, scalars, lima = lima_scan(DataStore(url), session, filename, nb, saving, extra_info)
    wait_scan_exists(proxy, f"{nb}_ascan")
    run_lima(scan, info, scalars, lima, saved=saved)
    return wait_scan_done(proxy, f"{nb}_ascan")


@pytest.mark.parametrize("ranks", [1, 3])
def test_lima_hdf5_frames_become_a_virtual_dataset(services, stack, data_dir, ranks):
    session = f"n{ranks}"
    proxy = services.get(ranks)[session]
    frames = realistic_frames(5, (32, 24))
    lima_dir = data_dir / "scan0001"
    lima_dir.mkdir()
    for file_number, (lo, hi) in enumerate([(0, 3), (3, 5)]):  # 3 frames per file
        with h5py.File(lima_dir / f"lima_simulator_{file_number:04d}.h5", "w") as f:
            d = f.create_dataset("entry_0000/ESRF-id00/lima_simulator/data", shape=(3, 32, 24), dtype="uint16")
            d[: hi - lo] = frames[lo:hi]
    saving = {"file_offset": 0, "frames_per_file": 3, "file_format": "hdf5",
              "file_path": str(lima_dir / "lima_simulator_%04d.h5"),
              "data_path": "/entry_0000/ESRF-id00/lima_simulator/data"}
    filename = str(data_dir / "lima.h5")
    plot = {"display_extra": {"plotselect": ["lima_simulator:image"]}}
    state = write_lima_scan(proxy, stack.env["REDIS_DATA_URL"], session, filename, 1, saving, extra_info=plot)
    assert state == "OFF", proxy.scan_state_reason("1_ascan")
    with h5py.File(filename, "r", locking=False) as f:
        d = f["1.1/instrument/lima_simulator/image"]
        assert d.is_virtual and d.shape == (5, 32, 24) and d.dtype == np.uint16
        assert [s.file_name for s in d.virtual_sources()] == ["scan0001/lima_simulator_0000.h5",
                                                              "scan0001/lima_simulator_0001.h5"]
        np.testing.assert_array_equal(d[()], frames)
        assert f.get("1.1/measurement/lima_simulator", getlink=True).path == "/1.1/instrument/lima_simulator/image"
        assert f["1.1/instrument/lima_simulator/type"][()] == b"lima"
        assert f["1.1/instrument/lima_simulator"].attrs["NX_class"] == "NXdetector"
        plot = f["1.1/plotselect"]  # the frames plotted: the VDS linked, robx and the frame dims as axes
        assert plot.attrs["signal"] == "lima_simulator"
        assert list(plot.attrs["axes"]) == ["robx", "datadim0", "datadim1"]
        assert plot.get("lima_simulator", getlink=True).path == "/1.1/instrument/lima_simulator/image"
        np.testing.assert_array_equal(plot["lima_simulator"][()], frames)
        assert plot["datadim0"].shape == (32,) and plot["datadim1"].shape == (24,)


def test_lima_edf_frames_become_references_and_unsaved_lima_an_empty_group(services, stack, data_dir):
    proxy = services.get(2)["n2"]
    url = stack.env["REDIS_DATA_URL"]
    saving = {"file_offset": 0, "frames_per_file": 2, "file_format": "edf",
              "file_path": str(data_dir / "scan0002" / "lima_simulator_%04d.edf"), "data_path": None}
    plot = {"display_extra": {"plotselect": ["lima_simulator:image", "diode"]}}
    state = write_lima_scan(proxy, url, "n2", str(data_dir / "edf.h5"), 2, saving, extra_info=plot)
    assert state == "OFF", proxy.scan_state_reason("2_ascan")
    with h5py.File(data_dir / "edf.h5", "r", locking=False) as f:
        refs = [r.decode() for r in f["2.1/instrument/lima_simulator/image"][()]]
        assert refs == ["scan0002/lima_simulator_0000.edf::0", "scan0002/lima_simulator_0000.edf::1",
                        "scan0002/lima_simulator_0001.edf::0", "scan0002/lima_simulator_0001.edf::1",
                        "scan0002/lima_simulator_0002.edf::0"]
        assert "lima_simulator" not in f["2.1/measurement"]
        assert f["2.1/plotselect"].attrs["signal"] == "diode" and "lima_simulator" not in f["2.1/plotselect"]

    state = write_lima_scan(proxy, url, "n2", str(data_dir / "nosaving.h5"), 3, None)
    assert state == "OFF", proxy.scan_state_reason("3_ascan")
    with h5py.File(data_dir / "nosaving.h5", "r", locking=False) as f:
        group = f["3.1/instrument/lima_simulator"]
        assert group.attrs["NX_class"] == "NXdetector" and list(group) == ["type"]


def test_scan_sequence_links_its_children(services, stack, data_dir):
    """A sequence in one file, its children in another: root links '<nb>.1' to the children's entries."""
    from blissdata.redis_engine.store import DataStore

    proxy = services.get(2)["n2"]
    url = stack.env["REDIS_DATA_URL"]
    store = DataStore(url)
    seq_file, child_file = str(data_dir / "sequence.h5"), str(data_dir / "children.h5")
    seq_info = {"name": "10_sequence", "scan_nb": 10, "title": "sequence", "save": True, "data_writer": "nexus",
                "filename": seq_file, "start_time": "2025-01-15T10:00:00+01:00", "is_scan_sequence": True,
                "acquisition_chain": {"GroupingMaster": {"devices": ["1:group"]}},
                "devices": {"1:group": {"name": "group", "channels": ["group:SUBSCANS"]}},
                "channels": {"group:SUBSCANS": {"device": "1:group", "dim": 0}},
                "scan_meta_categories": []}
    seq = store.create_scan({"name": "sequence", "number": 10, "data_policy": "None", "session": "n2",
                             "path": seq_file}, info=seq_info)
    subscans = seq.create_stream(ScanStream.make_definition("group:SUBSCANS"))
    wait_scan_exists(proxy, "10_sequence")
    seq.info = seq_info
    seq.prepare()
    seq.start()
    children = []
    for nb in (11, 12):
        pub = ScanPublisher(url, ScanSpec("n2", child_file, nb, 4, image_shape=None, mca_channels=None))
        wait_scan_exists(proxy, pub.spec.name)
        pub.run()
        subscans.send({"key": pub.scan.key})
        children.append(pub)
    seq.stop()
    seq.close()
    for name in ("11_ascan", "12_ascan", "10_sequence"):
        assert wait_scan_done(proxy, name) == "OFF", proxy.scan_state_reason(name)
    with h5py.File(seq_file, "r", locking=False) as f:
        for nb in (11, 12):
            link = f.get(f"{nb}.1", getlink=True)
            assert isinstance(link, h5py.ExternalLink) and link.filename == child_file and link.path == f"/{nb}.1"
            np.testing.assert_array_equal(f[f"{nb}.1/instrument/robx/value"][()], children[0].expected("axis:robx", 4))
        assert f["10.1/writer/status"][()] == b"SUCCEEDED"
        assert "measurement" not in f["10.1"]  # a Sequence has no data of its own: no empty measurement group


def write_lima_files(directory, frames: np.ndarray, per_file: int, fmt: str) -> dict:
    """The files Lima would have saved, and the stream's saving info for them."""
    from fabio.edfimage import EdfImage

    directory.mkdir()
    data_path = "/entry_0000/ESRF-id00/lima_simulator/data"
    for number, lo in enumerate(range(0, len(frames), per_file)):
        chunk = frames[lo:lo + per_file]
        if fmt == "hdf5":
            with h5py.File(directory / f"lima_simulator_{number:04d}.h5", "w") as f:
                f.create_dataset(data_path, data=chunk)
        else:
            edf = EdfImage(data=chunk[0], header={"acq_frame_nb": str(lo)})
            for frame in chunk[1:]:
                edf.append_frame(data=frame)
            edf.write(str(directory / f"lima_simulator_{number:04d}.edf"))
    return {"file_offset": 0, "frames_per_file": per_file, "file_format": fmt,
            "file_path": str(directory / f"lima_simulator_%04d.{'h5' if fmt == 'hdf5' else 'edf'}"),
            "data_path": data_path if fmt == "hdf5" else None}


def test_lima_edf_frames_become_an_external_dataset(services, stack, data_dir):
    """enable_external_nonhdf5: the EDF frames' raw data is referenced (absolute paths, offsets past the
    headers), not copied; reading the dataset gives the frames."""
    proxy = services.get(2, ("edfext",), enable_external_nonhdf5=True)["edfext"]
    frames = realistic_frames(5, (32, 24))
    saving = write_lima_files(data_dir / "scan0004", frames, 2, "edf")
    filename = str(data_dir / "edfext.h5")
    state = write_lima_scan(proxy, stack.env["REDIS_DATA_URL"], "edfext", filename, 4, saving)
    assert state == "OFF", proxy.scan_state_reason("4_ascan")
    with h5py.File(filename, "r", locking=False) as f:
        d = f["4.1/instrument/lima_simulator/image"]
        assert d.external is not None and len(d.external) == 5 and not d.is_virtual
        assert d.external[2][0] == str(data_dir / "scan0004" / "lima_simulator_0001.edf")
        assert all(offset >= 512 and size == 32 * 24 * 2 for _, offset, size in d.external)
        np.testing.assert_array_equal(d[()], frames)
        assert f["4.1/measurement/lima_simulator"].shape == (5, 32, 24)


@pytest.mark.parametrize("fmt", ["hdf5", "edf"])
def test_lima_frames_are_copied_when_links_are_not_allowed(services, stack, data_dir, fmt):
    """disable_external_hdf5 + copy_non_external: the writer ranks read the frames from Lima's files
    and write them into the scan file (chunked per frame, compressed)."""
    proxy = services.get(3, ("limacopy",), disable_external_hdf5=True, copy_non_external=True)["limacopy"]
    frames = realistic_frames(5, (32, 24), seed=3)
    saving = write_lima_files(data_dir / "scan0005", frames, 2, fmt)
    filename = str(data_dir / f"copy_{fmt}.h5")
    state = write_lima_scan(proxy, stack.env["REDIS_DATA_URL"], "limacopy", filename, 5, saving)
    assert state == "OFF", proxy.scan_state_reason("5_ascan")
    with h5py.File(filename, "r", locking=False) as f:
        d = f["5.1/instrument/lima_simulator/image"]
        assert not d.is_virtual and d.external is None and d.chunks == (5, 32, 24)  # blisswriter's chunk guess
        np.testing.assert_array_equal(d[()], frames)
        assert f["5.1/measurement/lima_simulator"].shape == (5, 32, 24)


def test_frames_lima_never_saved_fault_the_copy(services, stack, data_dir):
    """5 frames reported, 3 saved: the 3 are copied, the scan FAULTs saying so (no silent truncation)."""
    proxy = services.get(3, ("limacopy",), disable_external_hdf5=True, copy_non_external=True)["limacopy"]
    frames = realistic_frames(3, (32, 24), seed=4)
    saving = write_lima_files(data_dir / "scan0006", frames, 2, "hdf5")
    filename = str(data_dir / "unsaved.h5")
    assert write_lima_scan(proxy, stack.env["REDIS_DATA_URL"], "limacopy", filename, 6, saving, saved=3) == "FAULT"
    assert proxy.scan_state_reason("6_ascan") == ("lima_simulator:image: Lima reported 5 frames but saved only 3: "
                                                  "the missing frames cannot be copied")
    with h5py.File(filename, "r", locking=False) as f:
        np.testing.assert_array_equal(f["6.1/instrument/lima_simulator/image"][()], frames)
        assert f["6.1/writer/status"][()] == b"FAILED"
