"""Paths confined to the allowed roots (device property `allowed_roots`, docs/allowed_roots.md), on the
real stack: real Redis and Tango DB, the service under mpirun with a NexusWriter and a BlissWriter whose
`allowed_roots` is one directory, scans published as BLISS does. A scan whose scan file, master file or
linked file is outside FAULTs before anything is made; `makedirs` outside is refused; a detector whose
files are outside is refused (a warning), the rest of its scan written; a scan inside is written."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import tango

from launch.simulate import ScanPublisher, ScanSpec, realistic_frames, scan_info
from tests.helpers import ROOT, assert_file_matches, run_scan, wait_scan_done, wait_scan_exists
from tests.test_h5maps import scan_map
from tests.test_references import lima_scan, run_lima, write_lima_scan

SESSION = "roots"
INSTANCE = "w_roots"


@dataclass
class Confined:
    nexus: tango.DeviceProxy
    bliss: tango.DeviceProxy
    allowed: Path
    outside: Path
    url: str
    log: Path


@pytest.fixture(scope="module")
def confined(stack, tmp_path_factory):
    """One service (2 ranks), NexusWriter and BlissWriter of session 'roots', allowed_roots = [allowed];
    allowed/escape is a symlink to outside/."""
    allowed, outside = tmp_path_factory.mktemp("allowed"), tmp_path_factory.mktemp("outside")
    (allowed / "escape").symlink_to(outside)
    url = stack.env["REDIS_DATA_URL"]
    nexus = stack.register(SESSION, INSTANCE)
    bliss = subprocess.run([sys.executable, "-m", "nxpar.service.register", SESSION, "--class", "BlissWriter",
                            "--instance", INSTANCE, "--domain", "id00", "--redis-url", url], check=True,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
                           ).stdout.strip().splitlines()[-1]
    for device in (nexus, bliss):
        tango.Database().put_device_property(device, {"allowed_roots": [str(allowed)]})
    stack.start_service(INSTANCE, 2, "INFO")
    try:
        yield Confined(stack.wait_device(nexus), stack.wait_device(bliss), allowed, outside, url,
                       stack.rundir / f"service_{INSTANCE}.log")
    finally:
        stack.stop_service(INSTANCE)


def spec(nb: int, filename: Path | str, session: str = SESSION, **kwargs) -> ScanSpec:
    return ScanSpec(session, str(filename), nb, 3, image_shape=None, mca_channels=None, **kwargs)


def assert_faults(proxy, url: str, scan: ScanSpec, *texts: str) -> str:
    """The scan FAULTs with a reason that says each of `texts`; returns the reason."""
    run_scan(proxy, url, scan, expect="FAULT")
    reason = proxy.scan_state_reason(scan.name)
    assert all(t in reason for t in texts), reason
    return reason


def test_a_scan_inside_the_roots_is_written(confined):
    scan = ScanSpec(SESSION, str(confined.allowed / "sample" / "sample_0001.h5"), 1, 6, image_shape=(8, 8),
                    mca_channels=None)
    assert_file_matches(run_scan(confined.nexus, confined.url, scan), 6)
    log = confined.log.read_text()
    for device in (confined.nexus, confined.bliss):
        assert f"{device.name()}: allowed roots: {confined.allowed}" in log


def test_a_scan_outside_faults_before_anything_is_made(confined):
    allowed, outside, url = confined.allowed, confined.outside, confined.url
    roots = f"outside the allowed roots ({allowed})"
    assert_faults(confined.nexus, url, spec(2, outside / "new" / "x.h5"), f"scan file: {outside}/new/x.h5 is {roots}")
    probe = f"/etc/nxpar_allowed_roots_probe_{os.getpid()}.h5"
    assert_faults(confined.nexus, url, spec(3, probe), f"scan file: {probe} is {roots}")
    assert_faults(confined.nexus, url, spec(4, allowed / "escape" / "linked.h5"),
                  f"{allowed}/escape/linked.h5 (real path {outside}/linked.h5) is {roots}")
    assert not os.path.exists(probe) and not (outside / "new").exists() and not (outside / "linked.h5").exists()


def test_master_files_and_separate_scan_files_outside_fault(confined):
    allowed, outside, url = confined.allowed, confined.outside, confined.url
    nexuswriter = scan_info(spec(5, allowed / "m" / "scan.h5"))["nexuswriter"]
    nexuswriter["masterfiles"] = {"dataset": str(outside / "m" / "dataset.h5")}
    assert_faults(confined.nexus, url, spec(5, allowed / "m" / "scan.h5", extra_info={"nexuswriter": nexuswriter}),
                  f"master file: {outside}/m/dataset.h5 is outside the allowed roots ({allowed})")
    separate = {"writer_options": {"chunk_options": {}, "separate_scan_files": True},
                "images_path": f"{outside}/{{scan_name}}/{{img_acq_device}}_"}
    assert_faults(confined.nexus, url, spec(6, allowed / "sep" / "dataset.h5", extra_info=separate),
                  f"(real path {outside}/bliss_master.h5) is outside the allowed roots")
    assert not (allowed / "m").exists() and not (allowed / "sep").exists()
    assert not (outside / "m").exists() and not (outside / "bliss_master.h5").exists()


def test_an_h5map_linking_a_file_outside_faults(confined):
    """The NexusWriter writes an h5map too: its external binary file outside the roots FAULTs the scan."""
    allowed, outside = confined.allowed, confined.outside
    filename, raw_file = str(allowed / "mapped.h5"), str(outside / "raw.bin")
    np.arange(12, dtype="<u2").tofile(raw_file)
    scan = spec(7, filename, extra_info={"h5maps": scan_map(filename, raw_file, 3)})
    assert_faults(confined.nexus, confined.url, scan, f"file linked from the scan file {filename}: {raw_file} is outside")
    assert not os.path.exists(filename)


def test_the_mapping_route_is_confined_too(confined):
    """BlissWriter.SaveScan of a scan whose file is outside: FAULT, nothing made; inside: written."""
    for nb, directory, expected in ((8, confined.outside, "FAULT"), (9, confined.allowed, "OFF")):
        filename = str(directory / f"bliss_{nb}.h5")
        raw_file = str(confined.allowed / f"raw_{nb}.bin")
        np.arange(12, dtype="<u2").tofile(raw_file)
        scan = ScanSpec(SESSION, filename, nb, 4, image_shape=(8, 6), mca_channels=None, data_writer="mapping",
                        extra_info={"h5maps": scan_map(filename, raw_file, 4)})
        pub = ScanPublisher(confined.url, scan)
        assert confined.bliss.SaveScan(pub.scan.key) is True
        pub.run(batch=2)
        state = wait_scan_done(confined.bliss, pub.scan.key)
        reason = confined.bliss.scan_state_reason(pub.scan.key)
        assert state == expected, reason
        assert os.path.exists(filename) == (expected == "OFF")
        assert (f"scan file: {filename} is outside the allowed roots" in reason) == (expected == "FAULT"), reason


def test_makedirs_is_confined(confined):
    allowed, outside = confined.allowed, confined.outside
    confined.nexus.makedirs(str(allowed / "visitor" / "id00"))
    assert (allowed / "visitor" / "id00").is_dir()
    for path in (outside / "mk", allowed / "escape" / "mk", f"/etc/nxpar_makedirs_probe_{os.getpid()}",
                 f"{allowed}/../made_outside/../{allowed.name}/x"):
        with pytest.raises(tango.DevFailed) as excinfo:
            confined.nexus.makedirs(str(path))
        error = excinfo.value.args[0]
        assert error.reason == "NexusWriter_PathNotAllowed", error.desc
        assert str(path) in error.desc and f"outside the allowed roots ({allowed})" in error.desc
    assert not (outside / "mk").exists() and not (allowed.parent / "made_outside").exists()
    assert not os.path.exists(f"/etc/nxpar_makedirs_probe_{os.getpid()}")


def test_init_rereads_allowed_roots(confined):
    """A root added to the property counts after Tango Init (and is gone again after the next)."""
    allowed, outside, name = confined.allowed, confined.outside, confined.nexus.name()
    with pytest.raises(tango.DevFailed):
        confined.nexus.makedirs(str(outside / "added"))
    tango.Database().put_device_property(name, {"allowed_roots": [str(allowed), str(outside)]})
    try:
        confined.nexus.init()
        confined.nexus.makedirs(str(outside / "added"))
        assert (outside / "added").is_dir()
    finally:
        tango.Database().put_device_property(name, {"allowed_roots": [str(allowed)]})
        confined.nexus.init()
    with pytest.raises(tango.DevFailed):
        confined.nexus.makedirs(str(outside / "again"))


def lima_saving(directory: Path, frames: np.ndarray, symlinked: dict[int, Path] | None = None) -> dict:
    """Lima HDF5 files of 3 frames each in `directory`; symlinked {file number: directory}: that file is
    written there instead, and `directory` has a symlink to it."""
    directory.mkdir(exist_ok=True)
    for number in range(-(-len(frames) // 3)):
        name = f"lima_simulator_{number:04d}.h5"
        elsewhere = (symlinked or {}).get(number)
        if elsewhere is not None:
            elsewhere.mkdir(exist_ok=True)
            (directory / name).symlink_to(elsewhere / name)
        with h5py.File((elsewhere or directory) / name, "w") as f:
            f["entry_0000/ESRF-id00/lima_simulator/data"] = frames[3 * number:3 * number + 3]
    return {"file_offset": 0, "frames_per_file": 3, "file_format": "hdf5",
            "file_path": str(directory / "lima_simulator_%04d.h5"), "data_path": "/entry_0000/ESRF-id00/lima_simulator/data"}


def test_lima_files_outside_are_refused_and_the_scan_written(confined):
    """Lima files outside; inside but symlinks to files outside (the first one, or only the second): not
    linked (a warning naming the file), the scan's other channels written, the scan OFF."""
    allowed, outside = confined.allowed, confined.outside
    frames = realistic_frames(5, (32, 24))
    cases = {10: lima_saving(outside / "lima10", frames),
             11: lima_saving(allowed / "lima11", frames, symlinked={0: outside / "lima11", 1: outside / "lima11"}),
             12: lima_saving(allowed / "lima12", frames, symlinked={1: outside / "lima12"})}
    for nb, saving in cases.items():
        filename = str(allowed / f"lima_{nb}.h5")
        state = write_lima_scan(confined.nexus, confined.url, SESSION, filename, nb, saving)
        assert state == "OFF", confined.nexus.scan_state_reason(f"{nb}_ascan")
        warning = str([row for row in confined.nexus.scan_info if row.startswith(f"{nb}_ascan")])
        assert "lima_simulator:image: Lima files: " in warning and "is outside the allowed roots" in warning, warning
        assert nb == 10 or f"(real path {outside}/lima{nb}/" in warning, warning
        with h5py.File(filename, "r", locking=False) as f:
            frames_linked = f.get(f"{nb}.1/instrument/lima_simulator/image")
            if nb == 12 and frames_linked is not None:  # the frames of the first file, if seen before the second
                assert {s.file_name for s in frames_linked.virtual_sources()} == {"lima12/lima_simulator_0000.h5"}
                np.testing.assert_array_equal(frames_linked[()], frames[:len(frames_linked)])
            else:
                assert frames_linked is None  # nothing linked
            np.testing.assert_array_equal(f[f"{nb}.1/instrument/robx/value"][()], np.arange(5.0))
            assert f[f"{nb}.1/writer/status"][()] == b"SUCCEEDED"


def test_lima2_and_mosca_files_outside_are_refused_and_the_scan_written(confined):
    """A Lima2 master file outside, Mosca files outside (element 0) or one of them a symlink to a file
    outside (element 3): those channels refused (a warning naming the file), the scan written OFF."""
    pytest.importorskip("blissdata_lima2")
    pytest.importorskip("blissdata_mosca")
    from tests.plugin_publish import ConductorVersion, Lima2Files, PluginScan, write_mosca_files

    allowed, outside = confined.allowed, confined.outside
    conductor = ConductorVersion()
    lima2 = Lima2Files(outside / "lima2", "eiger", "frame", (16, 12), per_file=2)
    spectra = np.random.default_rng(0).poisson(20, size=(2, 7, 64)).astype(np.uint32)
    saving0 = write_mosca_files(outside / "mosca", "fx", spectra[:1], [0], per_file=4)
    saving3 = write_mosca_files(allowed / "mosca", "fx", spectra[1:], [3], per_file=4, files=1)
    write_mosca_files(outside / "mosca3", "fx", spectra[1:], [3], per_file=4, first_file=1)
    (allowed / "mosca" / "fx_spectra_0001.h5").symlink_to(outside / "mosca3" / "fx_spectra_0001.h5")
    filename = str(allowed / "plugins.h5")
    pub = PluginScan(confined.url, SESSION, filename, 12, 7, conductor_port=conductor.port,
                     lima2={"eiger:frame": {"shape": (16, 12), "dtype": "uint16", "master_file": list(lima2.master_file)}},
                     mosca={0: {"size": 64, "saving": saving0}, 3: {"size": 64, "saving": saving3}}).create()
    try:
        wait_scan_exists(confined.nexus, "12_ascan")
        pub.prepare_start()
        pub.points(0, 7)
        pub.lima2_progress(7)
        pub.mosca_status(6, 6)
        pub.stop_close()
        assert wait_scan_done(confined.nexus, "12_ascan") == "OFF", confined.nexus.scan_state_reason("12_ascan")
    finally:
        pub.close_if_open()
        conductor.stop()
    rows = str([row for row in confined.nexus.scan_info if row.startswith("12_ascan")])
    assert f"eiger:frame: lima2 files: {lima2.master_file[0]} is outside the allowed roots" in rows, rows
    assert f"fx:spectrum:spec_det00: mosca files: {outside}/mosca/fx_spectra_0000.h5 is outside" in rows, rows
    assert (f"fx:spectrum:spec_det03: mosca files: {allowed}/mosca/fx_spectra_0001.h5 (real path "
            f"{outside}/mosca3/fx_spectra_0001.h5) is outside the allowed roots") in rows, rows
    with h5py.File(filename, "r", locking=False) as f:
        e = f["12.1"]
        assert e.get("instrument/eiger/frame") is None and e.get("instrument/fx_det0/spectrum") is None
        copied = e.get("instrument/fx_det3/spectrum")  # at most the points of the file inside
        assert copied is None or copied.shape[0] <= 4 and np.array_equal(copied[()], spectra[1, :copied.shape[0]])
        np.testing.assert_array_equal(e["instrument/fx_det0/trigger_count_rate"][()], 1000.0 + np.arange(7))
        assert e["writer/status"][()] == b"SUCCEEDED"


def test_unset_roots_keep_nxpar_out_of_the_system_directories(services, stack):
    """The default (allowed_roots unset): a start-up WARNING, and nothing written, made or linked in
    /etc and the other system directories."""
    proxy = services.get(2)["n2"]
    probe = f"/etc/nxpar_unset_probe_{os.getpid()}.h5"
    assert_faults(proxy, stack.env["REDIS_DATA_URL"], spec(9401, probe, session="n2"),
                  f"scan file: {probe} is in the system directory /etc")
    with pytest.raises(tango.DevFailed) as excinfo:
        proxy.makedirs(f"/etc/nxpar_unset_probe_{os.getpid()}_dir")
    assert excinfo.value.args[0].reason == "NexusWriter_PathNotAllowed"
    assert not os.path.exists(probe) and not os.path.exists(f"/etc/nxpar_unset_probe_{os.getpid()}_dir")
    log = (stack.rundir / "service_w_n2.log").read_text()
    assert f"{proxy.name()}: allowed_roots is unset" in log


def test_batch_allowed_roots_option(stack, tmp_path):
    """NexusWriterBatch --allowed-roots: a scan inside written, one outside FAULT (exit status 1), Lima
    frames to copy from files outside refused (a warning) with their scan written."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    url = stack.env["REDIS_DATA_URL"]
    inside = ScanPublisher(url, spec(1, allowed / "in.h5", session="roots_batch"))
    inside.run()
    ScanPublisher(url, spec(2, outside / "out.h5", session="roots_batch")).run()
    from blissdata.redis_engine.store import DataStore

    lima = lima_scan(DataStore(url), "roots_batch", str(allowed / "lima.h5"), 3,
                     lima_saving(outside / "lima", realistic_frames(5, (32, 24))))
    run_lima(*lima)
    run = subprocess.run(["mpirun", "-n", "2", sys.executable, "-m", "nxpar.service.batch", url, "--session",
                          "roots_batch", "--existing", "--once", "--allowed-roots", str(allowed),
                          "--disable-external-hdf5", "--copy-non-external"],
                         capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "NXPAR_STATE_DIR": str(tmp_path / "state")})
    log = run.stdout + run.stderr
    assert run.returncode == 1, log[-4000:]
    assert f"NexusWriterBatch: allowed roots: {allowed}" in log
    assert f"scan file: {outside}/out.h5 is outside the allowed roots ({allowed})" in log
    assert "2 scan(s) OFF (written, or not to be saved), 1 FAULT" in log
    assert "lima_simulator:image: Lima files: " in log and not os.path.exists(outside / "out.h5")
    assert_file_matches(inside, 3)
    with h5py.File(allowed / "lima.h5", "r", locking=False) as f:
        assert f.get("3.1/instrument/lima_simulator/image") is None and f["3.1/writer/status"][()] == b"SUCCEEDED"
