"""Lima2 receivers' files that do not look as the round robin expects yet (a file its receiver
seems to have closed but that is not full, a receiver whose first file comes late), the bounded
Lima2 conductor's build threads, and Mosca readers kept per scan: files as Lima2 writes them
(`tests/plugin_publish.py`), the real stack where the writer service is involved."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from launch.simulate import realistic_frames
from nxpar.sources import lima2_conductor
from nxpar.sources.lima2_conductor import BoundedLima2Plugin, ConductorUnreachable
from nxpar.sources.lima2_receivers import Lima2Receivers, read_pieces
from tests.helpers import assert_done_without_warning, wait_scan_done, wait_scan_exists
from tests.live_reads import read_live, row_count

pytest.importorskip("blissdata_lima2")
pytest.importorskip("blissdata_mosca")

from tests.plugin_publish import ConductorVersion, Lima2Files, MoscaStandInServer, PluginScan, service_env  # noqa: E402
from tests.test_plugin_streams import wait_for  # noqa: E402

SHAPE = (8, 6)


def frames_of(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 60000, size=(n,) + SHAPE).astype(np.uint16)


def receivers_of(files: Lima2Files) -> Lima2Receivers:
    rcv = Lima2Receivers.from_master(files.master_file, SHAPE)
    assert rcv is not None
    return rcv


# -- files only --------------------------------------------------------------------------------------
def test_a_file_whose_next_exists_counts_only_once_it_holds_per_file_frames(tmp_path):
    """Receiver 1 opens its next file before the last frame of its first one is there: that file
    is not complete, its frames are not reported (the old check reported frames 0..5)."""
    frames = frames_of(8)
    files = Lima2Files(tmp_path, "eiger", "frame", SHAPE, receivers=2, per_file=3)
    rcv = receivers_of(files)
    files.write(frames[:5])  # receiver 0: 0 2 4 (file 0 full), receiver 1: 1 3
    files.write(frames[:7], hold=(1,))  # receiver 0: 6 in its file 1
    files.open_next(1)  # receiver 1's file 1 exists, its file 0 holds 2 frames of 3
    rcv.look()
    assert (rcv.receivers, rcv.per_file, rcv.complete) == (2, 3, [1, 0])
    assert rcv.closed_frames() == 1 and not rcv.frames_in_files(6) and rcv.frames_in_files(5)
    files.write(frames[:8])  # frame 5 completes receiver 1's file 0, frame 7 starts its file 1
    rcv.look()
    assert rcv.complete == [1, 1] and rcv.closed_frames() == 6 and rcv.frames_in_files(8)
    np.testing.assert_array_equal(read_pieces(rcv.pieces(0, 8), 0, 8, SHAPE, "uint16"), frames)


def test_frames_per_file_come_from_the_fullest_closed_file(tmp_path):
    """Receiver 0's first file is closed early (2 frames of 3), receiver 1's is full: 3 frames a
    file, receiver 0's first file not complete (the old check took 2 from receiver 0's file)."""
    frames = frames_of(8)
    files = Lima2Files(tmp_path, "eiger", "frame", SHAPE, receivers=2, per_file=3)
    rcv = receivers_of(files)
    files.write(frames[:8], hold=(0,))  # receiver 1: 1 3 5 | 7
    files.write(frames[:4])  # receiver 0: 0 2
    files.open_next(0)
    rcv.look()
    assert (rcv.per_file, rcv.complete, rcv.closed_frames()) == (3, [0, 1], 0)


def test_a_receiver_appearing_after_the_first_copy_breaks_the_placement(tmp_path):
    """Receiver 2's first file comes after the others closed one: nxpar took 2 receivers, and once
    frames were copied by that guess it keeps it, says the placement is broken, and the master
    file (3 receivers) disagrees with it (the old code took 3 receivers and saw no disagreement)."""
    frames = frames_of(12)
    files = Lima2Files(tmp_path, "eiger", "frame", SHAPE, receivers=3, per_file=2)
    rcv = receivers_of(files)
    files.write(frames[:8], hold=(2,))
    rcv.look()
    assert (rcv.receivers, rcv.per_file, rcv.closed_frames()) == (2, 2, 4)
    rcv.fix()  # frames 0..3 copied (wrongly: receiver 0's second frame is frame 3, not 2)
    files.write(frames)
    rcv.look()
    assert rcv.receivers == 2 and "receiver 2's first file appeared" in rcv.broken
    assert not rcv.frames_in_files(12)
    assert rcv.master_agrees(files.master_file[0]) is None  # no master file yet: cannot tell
    files.write_master()
    assert rcv.master_agrees(files.master_file[0]) is False


def test_more_frames_per_file_after_the_first_copy_break_the_placement(tmp_path):
    """Both receivers open their second file early (2 frames of 3 in the first): 2 frames a file is
    all the disk says; once frames were copied by it, a closed file holding 3 breaks it."""
    frames = frames_of(14)
    files = Lima2Files(tmp_path, "eiger", "frame", SHAPE, receivers=2, per_file=3)
    rcv = receivers_of(files)
    files.write(frames[:4])
    files.open_next(0)
    files.open_next(1)
    rcv.look()
    assert (rcv.per_file, rcv.closed_frames()) == (2, 4)
    rcv.fix()
    files.write(frames)
    rcv.look()
    assert rcv.per_file == 2 and "holds 3 frames, frames were copied assuming 2 per file" in rcv.broken


def test_master_agrees_tells_cannot_tell_from_disagrees(tmp_path):
    files = Lima2Files(tmp_path, "eiger", "frame", SHAPE, receivers=2, per_file=2)
    files.write(frames_of(6))
    rcv = receivers_of(files)
    rcv.look()
    assert rcv.master_agrees(files.master_file[0]) is None
    with h5py.File(files.master_file[0], "w") as f:  # being written: no dataset yet
        f.create_group("entry_0000")
    assert rcv.master_agrees(files.master_file[0]) is None
    files.write_master()
    assert rcv.master_agrees(files.master_file[0]) is True


# -- the bounded conductor -----------------------------------------------------------------------------
class StuckPlugin:
    """The plugin's stream build as a hung conductor makes it: blocks until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def load(self) -> "StuckPlugin":
        return self

    def stream_cls(self, event_stream) -> str:
        self.calls += 1
        self.release.wait(30)
        return "stream"


def test_a_build_timeout_is_a_failure_and_stuck_builds_do_not_pile_up(monkeypatch):
    """The conductor answers the version question but the plugin's build hangs: the time-out is
    remembered like any failure; once forgotten, a new build fails at once while the stuck thread
    lives (no second thread); when it ended, a build is tried again."""
    conductor = ConductorVersion()
    plugin = StuckPlugin()
    bounded = BoundedLima2Plugin(plugin, timeout_s=1.0)
    monkeypatch.setattr(lima2_conductor, "BUILD_TIMEOUT_S", 0.3)
    event = SimpleNamespace(info={"conductor_hostname": "127.0.0.1", "conductor_port": conductor.port})
    where = ("127.0.0.1", conductor.port)
    try:
        with pytest.raises(ConductorUnreachable, match="within 0.3 s"):
            bounded.stream_cls(event)
        assert "within 0.3 s" in bounded.failures[where][1]
        t0 = time.monotonic()
        with pytest.raises(ConductorUnreachable, match="within 0.3 s"):  # remembered: not built again
            bounded.stream_cls(event)
        monkeypatch.setattr(lima2_conductor, "FAILURE_MEMORY_S", 0.0)
        with pytest.raises(ConductorUnreachable, match="still building an earlier Lima2 stream"):
            bounded.stream_cls(event)
        assert time.monotonic() - t0 < 0.25 and plugin.calls == 1
        plugin.release.set()
        bounded.builds[where].join(5)
        assert bounded.stream_cls(event) == "stream" and plugin.calls == 2
    finally:
        plugin.release.set()
        conductor.stop()


# -- the real stack ------------------------------------------------------------------------------------
def copy_service(services):
    """A writer that copies Lima2 frames (disable_external_hdf5 + copy_non_external), plugins installed."""
    return services.get(3, ("l2copy",), extra_env=service_env(plugins=True), disable_external_hdf5=True,
                        copy_non_external=True)["l2copy"]


def _rows(filename: str, path: str) -> int:
    """Rows of a dataset of a file being written (-1 while it cannot be read; read in a child
    process, see tests/live_reads.py)."""
    rows = read_live(row_count, filename, path)
    return -1 if rows is None else rows


def _copy_scan(stack, data_dir, number: int, npoints: int, receivers: int, per_file: int):
    """(conductor, frames, Lima2 files, scan publisher, scan file) of a Lima2 copy scan of session
    l2copy: `npoints` 16×12 frames (seed = number + 10) dealt to `receivers`, `per_file` per file."""
    conductor = ConductorVersion()
    frames = realistic_frames(npoints, (16, 12), seed=number + 10)
    files = Lima2Files(data_dir / f"scan{number:04d}", "eiger", "frame", (16, 12), receivers=receivers,
                       per_file=per_file)
    lima2 = {"eiger:frame": {"shape": (16, 12), "dtype": "uint16", "master_file": list(files.master_file)}}
    filename = str(data_dir / f"copy{number}.h5")
    pub = PluginScan(stack.env["REDIS_DATA_URL"], "l2copy", filename, number, npoints, lima2=lima2,
                     conductor_port=conductor.port).create()
    return conductor, frames, files, pub, filename


def test_frames_of_a_file_not_full_are_not_copied_yet(services, stack, data_dir):
    """Receiver 1 has opened its second file while its first holds 2 frames of 3: only the frames
    before its missing one are copied during the scan (frame 0: frame 1 is receiver 1's first,
    in that file, frame 5 is missing from it); every frame at the end, no warning. The old check
    copied frames 0..5 and failed reading frame 5."""
    proxy = copy_service(services)
    conductor, frames, files, pub, filename = _copy_scan(stack, data_dir, 11, 10, receivers=2, per_file=3)
    path = "11.1/instrument/eiger/frame"
    try:
        wait_scan_exists(proxy, "11_ascan")
        pub.prepare_start()
        pub.points(0, 10)
        files.write(frames[:5])
        files.write(frames[:7], hold=(1,))
        files.open_next(1)
        pub.lima2_progress(7)
        wait_for("frame 0 copied", lambda: _rows(filename, path) >= 1)
        time.sleep(2.5)  # rank 0 looks at the files every second
        assert _rows(filename, path) == 1
        files.write(frames)
        files.write_master()
        pub.lima2_progress(10)
        pub.stop_close()
        assert_done_without_warning(proxy, "11_ascan")
    finally:
        pub.close_if_open()
        conductor.stop()
    with h5py.File(filename, "r", locking=False) as f:
        d = f[path]
        assert not d.is_virtual
        np.testing.assert_array_equal(d[()], frames)


def test_a_receiver_late_after_frames_were_copied_stops_the_copies(services, stack, data_dir):
    """Receiver 2's first file comes after receivers 0 and 1 closed one: frames 0..3 were copied
    taking 2 receivers (frames 2 and 3 are then frames 3 and 4). nxpar keeps that placement, warns
    that the frames copied may be out of order, copies nothing more from the receivers' files and
    the rest from the master file at the end. The old code took 3 receivers silently."""
    proxy = copy_service(services)
    conductor, frames, files, pub, filename = _copy_scan(stack, data_dir, 12, 12, receivers=3, per_file=2)
    path = "12.1/instrument/eiger/frame"
    try:
        wait_scan_exists(proxy, "12_ascan")
        pub.prepare_start()
        pub.points(0, 12)
        files.write(frames[:8], hold=(2,))
        pub.lima2_progress(8)
        wait_for("frames 0..3 copied", lambda: _rows(filename, path) >= 4)
        files.write(frames[:12], hold=(0, 1))  # receiver 2: frames 2 5 | 8 11, its first file closed
        pub.lima2_progress(9)
        wait_for("the warning in scan_info", lambda: any(
            row.startswith("12_ascan") and "receiver 2's first file appeared" in row and "out of order" in row
            for row in proxy.scan_info))
        time.sleep(1.5)
        assert _rows(filename, path) == 4
        files.write(frames)
        files.write_master()
        pub.lima2_progress(12)
        pub.stop_close()
        assert wait_scan_done(proxy, "12_ascan") == "OFF", proxy.scan_state_reason("12_ascan")
    finally:
        pub.close_if_open()
        conductor.stop()
    with h5py.File(filename, "r", locking=False) as f:
        d = f[path][()]
    assert d.shape == (12, 16, 12)
    np.testing.assert_array_equal(d[4:], frames[4:])  # from the master file
    np.testing.assert_array_equal(d[[0, 1, 2, 3]], frames[[0, 1, 3, 4]])  # copied by the 2-receiver guess


def test_mosca_readers_are_kept_per_scan(stack):
    """mosca-client's Reader keeps the metadata it read first: a new scan on the same server (same
    acquisition id, mosca-client ignores it) with another spectrum size reads with a new reader."""
    import tango

    from nxpar.sources import mosca_server
    from tests.mosca_standin import spectra as served

    server = MoscaStandInServer(stack, "id00/mosca/fx21", detectors=[0, 3], size=64)
    url = "id00/mosca/fx21"
    try:
        server.proxy.acquire(4)
        got = mosca_server.read_spectra(url, mosca_server.Acquisition("scan:a", 7), 3, 1, 3)
        np.testing.assert_array_equal(got, served([3], 64, 1, 3)[0])
        host, port = stack.env["TANGO_HOST"].split(":")
        tango.Database(host, int(port)).put_device_property(url, {"spectrum_size": ["32"]})
        server.proxy.command_inout("Init")
        server.proxy.acquire(4)
        assert mosca_server.available_points(url, mosca_server.Acquisition("scan:b", 7)) == 4
        got = mosca_server.read_spectra(url, mosca_server.Acquisition("scan:b", 7), 3, 1, 3)
        np.testing.assert_array_equal(got, served([3], 32, 1, 3)[0])
    finally:
        server.stop()
