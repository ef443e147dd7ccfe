"""Lima frames as virtual datasets / references, and scan sequences (spec §3.6, §4.7), on the real stack."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from blissdata.streams.default import Stream
from blissdata.streams.lima import LimaStream
from blissdata.streams.scan_sequence import ScanStream

from nxpar.simulate import ScanPublisher, ScanSpec, realistic_frames, scan_info
from tests.conftest import wait_scan_done, wait_scan_exists


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


def run_lima(scan, info, scalars, lima, n=5):
    scan.info = info
    scan.prepare()
    scan.start()
    for i in range(n):
        for s in scalars.values():
            s.send(np.array([float(i)]))
        lima.send({"last_index": i, "last_index_saved": i})
    scan.stop()
    info = dict(scan.info)
    info["end_reason"] = "SUCCESS"
    scan.info = info
    scan.close()


@pytest.mark.parametrize("ranks", [1, 3])
def test_lima_hdf5_frames_become_a_virtual_dataset(services, stack, data_dir, ranks):
    from blissdata.redis_engine.store import DataStore

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
    scan, info, scalars, lima = lima_scan(DataStore(stack.env["REDIS_DATA_URL"]), session, filename, 1, saving)
    wait_scan_exists(proxy, "1_ascan")
    run_lima(scan, info, scalars, lima)
    assert wait_scan_done(proxy, "1_ascan") == "OFF", proxy.scan_state_reason("1_ascan")
    with h5py.File(filename, "r", locking=False) as f:
        d = f["1.1/instrument/lima_simulator/image"]
        assert d.is_virtual and d.shape == (5, 32, 24) and d.dtype == np.uint16
        assert [s.file_name for s in d.virtual_sources()] == ["scan0001/lima_simulator_0000.h5",
                                                              "scan0001/lima_simulator_0001.h5"]
        np.testing.assert_array_equal(d[()], frames)
        assert f.get("1.1/measurement/lima_simulator", getlink=True).path == "/1.1/instrument/lima_simulator/image"
        assert f["1.1/instrument/lima_simulator/type"][()] == b"lima"
        assert f["1.1/instrument/lima_simulator"].attrs["NX_class"] == "NXdetector"


def test_lima_edf_frames_become_references_and_unsaved_lima_an_empty_group(services, stack, data_dir):
    from blissdata.redis_engine.store import DataStore

    proxy = services.get(2)["n2"]
    store = DataStore(stack.env["REDIS_DATA_URL"])
    saving = {"file_offset": 0, "frames_per_file": 2, "file_format": "edf",
              "file_path": str(data_dir / "scan0002" / "lima_simulator_%04d.edf"), "data_path": None}
    scan, info, scalars, lima = lima_scan(store, "n2", str(data_dir / "edf.h5"), 2, saving)
    wait_scan_exists(proxy, "2_ascan")
    run_lima(scan, info, scalars, lima)
    assert wait_scan_done(proxy, "2_ascan") == "OFF", proxy.scan_state_reason("2_ascan")
    with h5py.File(data_dir / "edf.h5", "r", locking=False) as f:
        refs = [r.decode() for r in f["2.1/instrument/lima_simulator/image"][()]]
        assert refs == ["scan0002/lima_simulator_0000.edf::0", "scan0002/lima_simulator_0000.edf::1",
                        "scan0002/lima_simulator_0001.edf::0", "scan0002/lima_simulator_0001.edf::1",
                        "scan0002/lima_simulator_0002.edf::0"]
        assert "lima_simulator" not in f["2.1/measurement"]

    scan, info, scalars, lima = lima_scan(store, "n2", str(data_dir / "nosaving.h5"), 3, None)
    wait_scan_exists(proxy, "3_ascan")
    run_lima(scan, info, scalars, lima)
    assert wait_scan_done(proxy, "3_ascan") == "OFF", proxy.scan_state_reason("3_ascan")
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
