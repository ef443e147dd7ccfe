"""Lima2 frames and Mosca spectra (blissdata plugin streams), on the real stack: streams made by the
plugins' classes on the real Redis, files as Lima2 and Mosca write them, values read back."""
from __future__ import annotations

import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from launch.simulate import realistic_frames
from nxpar.nexus.channel_mapping import map_subscan
from nxpar.nexus.plugin_plan import Lima2Info, PluginMode, lima2_mode, lima2_receivers_vds_node, lima2_vds_node
from nxpar.sources.blissdata_raw import plugin_entry, use_plugin
from nxpar.sources.detector_files import MoscaSaving, read_runs
from nxpar.sources.lima2_conductor import BoundedLima2Plugin
from nxpar.sources.lima2_receivers import Lima2Receivers, read_pieces
from nxpar.writers.tree import apply_nodes
from tests.helpers import assert_done_without_warning, wait_progress, wait_scan_done, wait_scan_exists
from tests.live_reads import first_rows, read_live, shape_and_virtual

pytest.importorskip("blissdata_lima2")
pytest.importorskip("blissdata_mosca")

from tests.mosca_standin import spectra as served_spectra  # noqa: E402
from tests.plugin_publish import (  # noqa: E402
    ConductorVersion,
    Lima2Files,
    MoscaStandInServer,
    PluginScan,
    service_env,
    write_lima2_files,
    write_mosca_files,
)

SPECTRUM = 64


def spectra(ndet: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(20, size=(ndet, n, SPECTRUM)).astype(np.uint32)


def wait_for(what: str, check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def frames_during_scan(filename: str, path: str, n: int):
    """The first n rows of a dataset of a file being written (None until it has them: the writer
    may be changing the file while we read; read in a child process, see tests/live_reads.py)."""
    return read_live(first_rows, filename, path, n)


def wait_frames(filename: str, path: str, expected: np.ndarray, timeout: float = 20.0):
    """Until the file shows `expected` as the first frames of `path`; (is virtual, VDS source files)."""
    def check():
        got = frames_during_scan(filename, path, len(expected))
        return got is not None and np.array_equal(got[0], expected) and got[1:]
    return wait_for(f"{path}: {len(expected)} frames in {filename}", check, timeout)


def read_during_scan(filename: str, path: str):
    """The dataset's (shape, is virtual), or None, from a file being written (in a child process)."""
    return read_live(shape_and_virtual, filename, path)


# -- pure logic --------------------------------------------------------------------------------------
def test_mosca_mapping_is_blisswriters():
    info = {"acquisition_chain": {"t": {"devices": ["1:t", "2:fx"]}},
            "devices": {"1:t": {"channels": ["timer:epoch"], "triggered_devices": ["2:fx"]},
                        "2:fx": {"channels": ["fx:spectrum:spec_det00", "fx:spectrum:spec_det11", "fx:stat:icr_det11",
                                              "fx:stat:deadtime_det00", "fx:roi:r1_sum_2_3", "fx:roi:r2_sum_all",
                                              "fx:roi:r3_det01"]}},
            "channels": {}}
    cfg = {k: {"device_type": "mosca", "device_info": {"type": "mca"}} for k in info["devices"]["2:fx"]["channels"]}
    cfg["fx:roi:r1_sum_2_3"]["channel"] = [2, 3]
    cfg["fx:roi:r2_sum_all"]["channel"] = -1
    cfg["fx:roi:r3_det01"]["channel"] = 1
    got = {k: (m.dataset, m.data_type) for k, m in map_subscan(info, "t", cfg).items()}
    assert got["fx:spectrum:spec_det00"] == ("instrument/fx_det0/spectrum", "principal")
    assert got["fx:spectrum:spec_det11"] == ("instrument/fx_det11/spectrum", "principal")
    assert got["fx:stat:icr_det11"] == ("instrument/fx_det11/trigger_count_rate", "icr")
    assert got["fx:stat:deadtime_det00"] == ("instrument/fx_det0/fractional_dead_time", "deadtime")
    assert got["fx:roi:r1_sum_2_3"] == ("instrument/fx_sum_2_3/r1", "roi")
    assert got["fx:roi:r2_sum_all"] == ("instrument/fx_sum_all/r2", "roi")
    assert got["fx:roi:r3_det01"] == ("instrument/fx_det1/r3", "roi")


@pytest.mark.parametrize("shape", [(16, 12), (2, 8, 6), (50,)])
def test_lima2_vds_has_the_frame_shape(tmp_path, shape):
    """(h, w), (channels, h, w) and vector frames: (n,) + the stream's shape, over the master file."""
    info = Lima2Info.from_info({"dtype": "uint16", "shape": list(shape),
                                "master_file": [str(tmp_path / "scan0001" / "eiger_frame_master.h5"), "entry_0000/d"]})
    assert lima2_mode(info, True, False) == PluginMode.LIMA2_LINK
    assert lima2_mode(info, False, True) == PluginMode.LIMA2_COPY
    node = lima2_vds_node("/1.1/instrument/eiger/frame", str(tmp_path / "data.h5"), info, 4)
    assert node.value["shape"] == (4,) + shape
    assert node.value["sources"] == [("scan0001/eiger_frame_master.h5", "/entry_0000/d", (4,) + shape, 0, 0, 4)]
    unsaved = Lima2Info.from_info({"dtype": "uint16", "shape": list(shape), "master_file": None})
    assert lima2_mode(unsaved, True, True) == PluginMode.GROUP_ONLY


def frames_of(shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 60000, size=(n,) + shape).astype(np.uint16)


@pytest.mark.parametrize("shape", [(16, 12), (2, 8, 6), (50,)])
def test_lima2_frames_from_the_receivers_files_before_the_master(tmp_path, shape):
    """During the acquisition (no master file yet) the frames are placed in the receivers' files
    (3 receivers, round robin, 2 frames a file, learnt from the disk): strided reads and the VDS
    over them give the frames written so far; the master file, at the end, gives the same."""
    frames = frames_of(shape, 11)
    files = Lima2Files(tmp_path / "scan0001", "eiger", "frame", shape, receivers=3, per_file=2)
    rcv = Lima2Receivers.from_master(files.master_file, shape)
    info = Lima2Info.from_info({"dtype": "uint16", "shape": list(shape), "master_file": list(files.master_file)})
    scan_file = str(tmp_path / "data.h5")
    with h5py.File(scan_file, "w") as f:
        f.require_group("1.1/eiger")
        for written in (1, 2, 4, 7, 11):
            files.write(frames[:written])
            rcv.look()
            assert rcv.receivers == min(written, 3) and rcv.per_file == (2 if written > 6 else 0)
            assert rcv.closed_frames() == {7: 1, 11: 6}.get(written, 0)  # all in files closed (next one there)
            np.testing.assert_array_equal(read_pieces(rcv.pieces(0, written), 0, written, shape, "uint16"),
                                          frames[:written])
            apply_nodes(f, [lima2_receivers_vds_node("/1.1/eiger/frame", scan_file, info, written,
                                                     rcv.pieces(0, written))])
            np.testing.assert_array_equal(f["1.1/eiger/frame"][()], frames[:written])
        np.testing.assert_array_equal(read_pieces(rcv.pieces(3, 10), 5, 9, shape, "uint16"), frames[5:9])
        assert {v.file_name for v in f["1.1/eiger/frame"].virtual_sources()} == {
            f"scan0001/eiger_frame_{r}_{k:05d}.h5" for r in range(3) for k in range(2)}
        assert rcv.frames_in_files(11) and not rcv.frames_in_files(12)
    assert read_pieces(rcv.pieces(0, 11), 0, 11, shape, "uint16").shape == (11,) + shape
    files.write_master()
    with h5py.File(files.master_file[0], "r") as m:
        np.testing.assert_array_equal(m[files.master_file[1]][()], frames)
    assert rcv.master_agrees(files.master_file[0])


def test_lima2_master_tells_a_receiver_ordering_other_than_assumed(tmp_path):
    """Receivers dealt frames in the order [1, 0]: the master file says so, and nxpar sees that
    its round-robin placement (receiver order) does not agree."""
    frames = frames_of((4, 3), 6)
    files = Lima2Files(tmp_path, "eiger", "frame", (4, 3), receivers=2, per_file=2, ordering=[1, 0])
    files.write(frames)
    files.write_master()
    with h5py.File(files.master_file[0], "r") as m:
        np.testing.assert_array_equal(m[files.master_file[1]][()], frames)
    rcv = Lima2Receivers.from_master(files.master_file, (4, 3))
    rcv.look()
    assert rcv.receivers == 2 and rcv.per_file == 2 and not rcv.master_agrees(files.master_file[0])


def test_mosca_runs_read_back_across_files(tmp_path):
    data = spectra(2, 10)
    saving = write_mosca_files(tmp_path / "scan0001", "fx", data, [0, 3], per_file=4)
    m = MoscaSaving.from_info({"detector": 3, "mosca_info": saving})
    runs = m.runs(2, 9)
    assert [(r[0].rsplit("/", 1)[1], r[2], r[3]) for r in runs] == [
        ("fx_spectra_0000.h5", 2, 2), ("fx_spectra_0001.h5", 0, 4), ("fx_spectra_0002.h5", 0, 1)]
    np.testing.assert_array_equal(read_runs(runs, 2, 3, 9), data[1, 3:9])
    assert m.closed_points(10) == 8 and m.saved_points(10, wait_s=0) == 10


# -- the real stack ------------------------------------------------------------------------------------
def lima2_channels(directory, frames: dict[str, np.ndarray], shapes: dict[str, tuple], master: bool):
    return {name: {"shape": shapes[name], "dtype": "uint16",
                   "master_file": list(write_lima2_files(directory, *name.split(":"), frames[name], shapes[name],
                                                         master=master))}
            for name in frames}


def test_lima2_linked_and_mosca_copied(services, stack, data_dir):
    """Plugins installed, conductor reachable: Lima2 frames are a VDS over the receivers' files while
    the receivers write them (the master file only comes at the end), read back during the scan,
    then over the master file; Mosca spectra are copied (compressed, whole spectra per chunk), one
    NXdetector per element; frame counts from the progress events in scan_progress."""
    proxy = services.get(3, ("plug",), extra_env=service_env(plugins=True))["plug"]
    conductor = ConductorVersion()
    scan_dir = data_dir / "scan0001"
    frames = {"eiger:frame": realistic_frames(7, (16, 12), seed=1),
              "eiger:acc_frame": np.stack([realistic_frames(2, (8, 6), seed=10 + i) for i in range(7)])}
    shapes = {"eiger:frame": (16, 12), "eiger:acc_frame": (2, 8, 6)}
    files = {name: Lima2Files(scan_dir, *name.split(":"), shapes[name], per_file=2) for name in frames}
    lima2 = {name: {"shape": shapes[name], "dtype": "uint16", "master_file": list(f.master_file)}
             for name, f in files.items()}
    data = spectra(2, 7)
    saving = write_mosca_files(scan_dir, "fx", data, [0, 3], per_file=4, files=1)
    filename = str(data_dir / "plug.h5")
    pub = PluginScan(stack.env["REDIS_DATA_URL"], "plug", filename, 1, 7, lima2=lima2,
                     mosca={0: {"size": SPECTRUM, "saving": saving}, 3: {"size": SPECTRUM, "saving": saving}},
                     conductor_port=conductor.port).create()
    try:
        wait_scan_exists(proxy, "1_ascan")
        pub.prepare_start()
        pub.points(0, 5)
        pub.lima2_progress(0, 0, 2, 2, 5)  # one count per poll: repeats and jumps, the last one counts
        pub.mosca_status(4, 3)
        wait_progress(proxy, "1_ascan", "pts-5pts")
        shape = wait_for("a 5-frame VDS during the scan",
                         lambda: (read_during_scan(filename, "1.1/instrument/eiger/frame") or ((0,), 0))[0][0] == 5
                         and read_during_scan(filename, "1.1/instrument/eiger/frame"))
        assert shape == ((5, 16, 12), True)
        for name, f in files.items():  # the receivers write the frames reported so far
            f.write(frames[name][:5])
        virtual, sources = wait_frames(filename, "1.1/instrument/eiger/frame", frames["eiger:frame"][:5])
        assert virtual and sources == {"scan0001/eiger_frame_0_00000.h5", "scan0001/eiger_frame_0_00001.h5",
                                       "scan0001/eiger_frame_1_00000.h5"}  # frames 0 2 | 4, 1 3
        wait_frames(filename, "1.1/instrument/eiger/acc_frame", frames["eiger:acc_frame"][:5])
        assert not (scan_dir / "eiger_frame_master.h5").exists()
        write_mosca_files(scan_dir, "fx", data, [0, 3], per_file=4, first_file=1)
        for name, f in files.items():  # the end of the acquisition: the conductor writes the master
            f.write(frames[name])
            f.write_master()
        pub.points(5, 7)
        pub.lima2_progress(7, 7)
        pub.mosca_status(6, 5)  # the last event: one point fewer saved than read
        pub.stop_close()
        assert_done_without_warning(proxy, "1_ascan")
    finally:
        conductor.stop()
    with h5py.File(filename, "r", locking=False) as f:
        e = f["1.1"]
        d = e["instrument/eiger/frame"]
        assert d.is_virtual and d.shape == (7, 16, 12) and d.dtype == np.uint16
        assert [s.file_name for s in d.virtual_sources()] == ["scan0001/eiger_frame_master.h5"]
        np.testing.assert_array_equal(d[()], frames["eiger:frame"])
        acc = e["instrument/eiger/acc_frame"]
        assert acc.shape == (7, 2, 8, 6)
        np.testing.assert_array_equal(acc[()], frames["eiger:acc_frame"])
        assert e.get("measurement/eiger", getlink=True).path == "/1.1/instrument/eiger/frame"
        assert e["instrument/eiger"].attrs["NX_class"] == "NXdetector"
        for i, det in enumerate((0, 3)):
            s = e[f"instrument/fx_det{det}/spectrum"]
            assert not s.is_virtual and s.chunks == (7, SPECTRUM)  # whole spectra per chunk
            assert "32008" in map(str, s._filters)  # compressed: bitshuffle-LZ4 by default
            np.testing.assert_array_equal(s[()], data[i])
            assert e[f"instrument/fx_det{det}"].attrs["NX_class"] == "NXdetector"
            np.testing.assert_array_equal(e[f"instrument/fx_det{det}/trigger_count_rate"][()],
                                          1000.0 + np.arange(7) + det)
            assert e.get(f"measurement/fx_det{det}", getlink=True).path == f"/1.1/instrument/fx_det{det}/spectrum"
        assert e["writer/status"][()] == b"SUCCEEDED"


def test_lima2_conductor_unreachable_is_a_warning_not_a_fault(services, stack, data_dir):
    """The conductor is gone when the writer loads the stream (BrokenPluginStream): the frames are
    linked from the stream info all the same, the warning is in scan_info, the scan is OFF."""
    proxy = services.get(3, ("plug",), extra_env=service_env(plugins=True))["plug"]
    conductor = ConductorVersion()
    frames = {"eiger:frame": realistic_frames(4, (16, 12), seed=2)}
    lima2 = lima2_channels(data_dir / "scan0002", frames, {"eiger:frame": (16, 12)}, master=True)
    filename = str(data_dir / "unreachable.h5")
    pub = PluginScan(stack.env["REDIS_DATA_URL"], "plug", filename, 2, 4, lima2=lima2,
                     conductor_port=conductor.port).create()
    conductor.stop()  # before PREPARED: the writer's blissdata cannot load the Lima2 stream
    wait_scan_exists(proxy, "2_ascan")
    pub.prepare_start()
    pub.points(0, 4)
    pub.lima2_progress(1, 4)
    wait_for("the warning in scan_info",
             lambda: any("eiger:frame" in row and "lima2" in row for row in proxy.scan_info))
    wait_for("the warning in scan_progress", lambda: any(row.startswith("2_ascan:") and "WARNING" in row
                                                          and "eiger:frame" in row for row in proxy.scan_progress))
    pub.stop_close()
    assert wait_scan_done(proxy, "2_ascan") == "OFF", proxy.scan_state_reason("2_ascan")
    with h5py.File(filename, "r", locking=False) as f:
        np.testing.assert_array_equal(f["2.1/instrument/eiger/frame"][()], frames["eiger:frame"])


def test_plugins_missing_frames_copied_and_mosca_vds(services, stack, data_dir):
    """Plugins not installed on the writer (MissingPluginStream), frames copied on request
    (disable_external_hdf5 + copy_non_external) by the writer ranks from the Lima2 files, Mosca
    spectra as a VDS over Mosca's files (mosca_vds); a warning, no FAULT."""
    proxy = services.get(3, ("noplug",), extra_env=service_env(plugins=False), disable_external_hdf5=True,
                         copy_non_external=True, mosca_vds=True)["noplug"]
    conductor = ConductorVersion()
    scan_dir = data_dir / "scan0003"
    frames = {"eiger:frame": realistic_frames(10, (16, 12), seed=3)}
    files = Lima2Files(scan_dir, "eiger", "frame", (16, 12), per_file=2)
    lima2 = {"eiger:frame": {"shape": (16, 12), "dtype": "uint16", "master_file": list(files.master_file)}}
    data = spectra(1, 9, seed=5)
    saving = write_mosca_files(scan_dir, "fx", data, [2], per_file=4)
    filename = str(data_dir / "noplug.h5")
    pub = PluginScan(stack.env["REDIS_DATA_URL"], "noplug", filename, 3, 9, lima2=lima2,
                     mosca={2: {"size": SPECTRUM, "saving": saving}}, conductor_port=conductor.port).create()
    try:
        wait_scan_exists(proxy, "3_ascan")
        pub.prepare_start()
        pub.points(0, 9)
        files.write(frames["eiger:frame"][:8])
        pub.lima2_progress(3, 8)
        pub.mosca_status(8, 7)
        wait_for("the warning in scan_info", lambda: any("not installed" in row for row in proxy.scan_info))
        # copied during the scan, before any master file: frames 0..3 are in files the receivers
        # closed (each receiver has started its third file only after frame 8 comes)
        virtual, _ = wait_frames(filename, "3.1/instrument/eiger/frame", frames["eiger:frame"][:4])
        assert not virtual and not (scan_dir / "eiger_frame_master.h5").exists()
        files.write(frames["eiger:frame"])
        files.write_master()  # the master file agrees with the round robin the copy assumed
        pub.lima2_progress(10)
        pub.stop_close()
        assert wait_scan_done(proxy, "3_ascan") == "OFF", proxy.scan_state_reason("3_ascan")
        assert not [row for row in proxy.scan_info if "3_ascan" in row and "round robin" in row]
    finally:
        conductor.stop()
    with h5py.File(filename, "r", locking=False) as f:
        d = f["3.1/instrument/eiger/frame"]
        assert not d.is_virtual and d.shape == (10, 16, 12) and list(d._filters)
        np.testing.assert_array_equal(d[()], frames["eiger:frame"])
        s = f["3.1/instrument/fx_det2/spectrum"]
        assert s.is_virtual and s.shape == (9, SPECTRUM)
        assert sorted({v.file_name for v in s.virtual_sources()}) == [
            f"scan0003/fx_spectra_{k:04d}.h5" for k in range(3)]
        np.testing.assert_array_equal(s[()], data[0])


def test_a_hung_lima2_conductor_costs_a_bounded_wait(services, stack, data_dir):
    """The conductor accepts connections but never answers when the writer loads the stream
    (lima2-client's handshake has no timeout): the writer gives up after 2 s, warns, and writes
    the frames from the stream info and files; the master file is never written here: after
    waiting 10 s for it, the frames stay linked in the receivers' files."""
    proxy = services.get(3, ("plug",), extra_env=service_env(plugins=True))["plug"]
    conductor = ConductorVersion()
    frames = realistic_frames(4, (16, 12), seed=4)
    files = Lima2Files(data_dir / "scan0004", "eiger", "frame", (16, 12))
    lima2 = {"eiger:frame": {"shape": (16, 12), "dtype": "uint16", "master_file": list(files.master_file)}}
    filename = str(data_dir / "hung.h5")
    pub = PluginScan(stack.env["REDIS_DATA_URL"], "plug", filename, 4, 4, lima2=lima2,
                     conductor_port=conductor.port).create()
    hung = conductor.blackhole()
    # the publisher's own blissdata reloads its streams at PREPARED, and would hang there too
    before = use_plugin("lima2", BoundedLima2Plugin(plugin_entry("lima2")))
    try:
        wait_scan_exists(proxy, "4_ascan")
        t0 = time.monotonic()
        pub.prepare_start()
        files.write(frames)
        pub.points(0, 4)
        pub.lima2_progress(4)
        wait_for("the warning in scan_info", lambda: any("eiger:frame" in row and "did not answer within 2 s" in row
                                                         for row in proxy.scan_info))
        assert time.monotonic() - t0 < 15
        pub.stop_close()
        assert wait_scan_done(proxy, "4_ascan") == "OFF", proxy.scan_state_reason("4_ascan")
    finally:
        hung.close()
        use_plugin("lima2", before)
    with h5py.File(filename, "r", locking=False) as f:
        d = f["4.1/instrument/eiger/frame"]
        assert {v.file_name for v in d.virtual_sources()} == {"scan0004/eiger_frame_0_00000.h5",
                                                              "scan0004/eiger_frame_1_00000.h5"}
        np.testing.assert_array_equal(d[()], frames)


def test_the_bounded_handshake_asks_what_lima2_client_asks():
    """ask_version: None from a conductor that answers the handshake, a reason within the time
    limit from one that accepts and never answers, or from a closed port."""
    from nxpar.sources.lima2_conductor import ask_version

    conductor = ConductorVersion()
    assert ask_version("127.0.0.1", conductor.port, 1.0) is None
    hung = conductor.blackhole()
    try:
        t0 = time.monotonic()
        assert ask_version("127.0.0.1", conductor.port, 0.5) == "did not answer within 0.5 s"
        assert time.monotonic() - t0 < 1.5
    finally:
        hung.close()
    assert "unreachable" in ask_version("127.0.0.1", conductor.port, 0.5)


def test_mosca_spectra_not_saved_are_read_from_the_mosca_server(services, stack, data_dir):
    """Mosca does not save (no saving info): the writer ranks read the spectra from the Mosca Tango
    device through mosca-client (a stand-in device server answering what mosca-client asks), during
    the scan, and write them compressed, whole spectra per chunk, one NXdetector per element."""
    proxy = services.get(3, ("plug",), extra_env=service_env(plugins=True))["plug"]
    server = MoscaStandInServer(stack, "id00/mosca/fx13", detectors=[0, 3], size=SPECTRUM)
    try:
        from mosca_client.tango.readers import Reader  # the stand-in speaks what mosca-client asks

        server.proxy.acquire(3)
        np.testing.assert_array_equal(Reader("id00/mosca/fx13").read_spectra(1, 3, read_detectors=[3]),
                                      served_spectra([3], SPECTRUM, 1, 3))
        filename = str(data_dir / "served.h5")
        # what bliss_mosca 2.4 (base.py, configure_saving) publishes when Mosca does not save
        not_saved = {"file_path": str(data_dir), "file_prefix": "fx_", "data_path": "/entry_0000/fx/data",
                     "file_format": None, "points_per_file": 100, "saving_enabled": False, "enabled_detectors": [0, 3]}
        pub = PluginScan(stack.env["REDIS_DATA_URL"], "plug", filename, 5, 9, mosca_url="id00/mosca/fx13",
                         mosca={0: {"size": SPECTRUM, "saving": not_saved},
                                3: {"size": SPECTRUM, "saving": not_saved}}).create()
        wait_scan_exists(proxy, "5_ascan")
        pub.prepare_start()
        pub.points(0, 6)
        server.proxy.acquire(6)
        pub.mosca_status(5, -1)
        wait_frames(filename, "5.1/instrument/fx_det3/spectrum", served_spectra([3], SPECTRUM, 0, 6)[0])
        pub.points(6, 9)
        server.proxy.acquire(9)
        pub.mosca_status(8, -1)
        pub.stop_close()
        assert_done_without_warning(proxy, "5_ascan")
    finally:
        server.stop()
    with h5py.File(filename, "r", locking=False) as f:
        for det in (0, 3):
            s = f[f"5.1/instrument/fx_det{det}/spectrum"]
            assert not s.is_virtual and s.chunks == (9, SPECTRUM) and "32008" in map(str, s._filters)
            np.testing.assert_array_equal(s[()], served_spectra([det], SPECTRUM, 0, 9)[0])
            assert f[f"5.1/instrument/fx_det{det}"].attrs["NX_class"] == "NXdetector"


def test_mosca_server_gone_is_a_warning_not_a_fault(services, stack, data_dir):
    """Mosca does not save and its Tango device is not there: a warning (scan_info), the detector
    group, the scan OFF."""
    proxy = services.get(3, ("plug",), extra_env=service_env(plugins=True))["plug"]
    not_saved = {"file_path": str(data_dir), "file_prefix": "fx_", "data_path": "/entry_0000/fx/data",
                 "file_format": None, "points_per_file": 100, "saving_enabled": False, "enabled_detectors": [1]}
    filename = str(data_dir / "gone.h5")
    pub = PluginScan(stack.env["REDIS_DATA_URL"], "plug", filename, 6, 3, mosca_url="id00/mosca/nowhere",
                     mosca={1: {"size": SPECTRUM, "saving": not_saved}}).create()
    wait_scan_exists(proxy, "6_ascan")
    pub.prepare_start()
    pub.points(0, 3)
    pub.mosca_status(2, -1)
    wait_for("the warning in scan_info", lambda: any("6_ascan" in row and "id00/mosca/nowhere cannot be read" in row
                                                     for row in proxy.scan_info))
    pub.stop_close()
    assert wait_scan_done(proxy, "6_ascan") == "OFF", proxy.scan_state_reason("6_ascan")
    with h5py.File(filename, "r", locking=False) as f:
        assert f["6.1/instrument/fx_det1"].attrs["NX_class"] == "NXdetector"
        assert f["6.1/writer/status"][()] == b"SUCCEEDED"
