"""Lima2 frames and Mosca spectra mapped as h5map stream datasets (BLISS's "mapping" route, the
BlissWriter device): real Redis, Tango DB and `mpirun` service; streams made by the plugins' own
classes, h5maps by blissdata's models, detector files as Lima2 and Mosca write them; BLISS's calls
replayed by `MappingClient`. At the path the map names the writer puts what the "nexus" route
puts for that stream (blisswriter 3.0.0: an external link for Lima2, a failed scan for Mosca)."""
from __future__ import annotations

import json
import subprocess

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import tango
from blissdata import h5map as h5m

from launch.simulate import realistic_frames
from tests.helpers import wait_scan_done
from tests.mapping_client import MappingClient

pytest.importorskip("blissdata_lima2")
pytest.importorskip("blissdata_mosca")

from tests.plugin_publish import ConductorVersion, PluginScan, service_env, write_lima2_files, write_mosca_files  # noqa: E402
from tests.test_batch import batch_cmd, batch_env  # noqa: E402
from tests.test_blisswriter import register_cli  # noqa: E402
from tests.test_plugin_streams import SPECTRUM, read_during_scan, spectra, wait_for  # noqa: E402

PLUG, NOPLUG = "mapplug", "mapnoplug"
INSTANCE = "w_mapping_plugins"
FRAME = (16, 12)


@pytest.fixture(scope="module")
def writers(stack):
    """One service per plugin set-up (plugins installed or hidden), each serving a BlissWriter;
    the one without plugins copies Lima2 frames and links Mosca spectra (device properties)."""
    proxies = {}
    for session, plugins, props in ((PLUG, True, {}),
                                    (NOPLUG, False, {"disable_external_hdf5": "true", "copy_non_external": "true",
                                                     "mosca_vds": "true"})):
        name = register_cli(session, "--class", "BlissWriter", "--instance", f"{INSTANCE}_{session}",
                            "--domain", "id00", "--redis-url", stack.env["REDIS_DATA_URL"])
        if props:
            tango.Database().put_device_property(name, props)
        stack.start_service(f"{INSTANCE}_{session}", 3, "INFO", extra_env=service_env(plugins=plugins))
        proxies[session] = name
    try:
        yield {session: stack.wait_device(name) for session, name in proxies.items()}
    finally:
        for session in proxies:
            stack.stop_service(f"{INSTANCE}_{session}")


class MappedPluginScan(PluginScan):
    """A PluginScan for the "mapping" route: BLISS's h5map of its channels in scan_info."""

    def info(self):
        info = super().info()
        info["data_writer"] = "mapping"
        info["h5maps"] = {self.filename: plugin_map(self.nb, list(self.lima2), list(self.mosca))}
        return info


def plugin_map(nb: int, lima2: list[str], mosca: list[int]) -> dict:
    """Each Lima2 channel at instrument/<det>/<source>, each Mosca element's spectrum and icr in its
    NXdetector, measurement links to them (as JSON, the way it travels in scan_info)."""
    e = f"{nb}.1"
    detectors: dict = {}
    links: dict = {}
    for name in lima2:
        det, source = name.split(":")
        group = detectors.setdefault(det, h5m.Group(attributes={"NX_class": "NXdetector"}, children={}))
        group.children[source] = h5m.Dataset(value=h5m.Stream(stream=name), attributes={"interpretation": "image"})
        links[f"{det}_{source}"] = h5m.SoftLink(target_path=f"/{e}/instrument/{det}/{source}")
    for det in mosca:
        detectors[f"fx_det{det}"] = h5m.Group(attributes={"NX_class": "NXdetector"}, children={
            "spectrum": h5m.Dataset(value=h5m.Stream(stream=f"fx:spectrum:spec_det{det:02d}")),
            "trigger_count_rate": h5m.Dataset(value=h5m.Stream(stream=f"fx:stat:icr_det{det:02d}"))})
        links[f"fx_det{det}"] = h5m.SoftLink(target_path=f"/{e}/instrument/fx_det{det}/spectrum")
    entry = h5m.Group(attributes={"NX_class": "NXentry"}, children={
        "title": h5m.Dataset(value="loopscan 7 0.1"),
        "instrument": h5m.Group(attributes={"NX_class": "NXinstrument"}, children=detectors),
        "diode": h5m.Dataset(value=h5m.Stream(stream="diode_ctrl:diode")),
        "measurement": h5m.Group(attributes={"NX_class": "NXcollection"}, children=links)})
    root = h5m.Group(children={e: entry})
    return json.loads(json.dumps(root.model_dump(), default=lambda a: a.tolist()))


def lima2_channel(directory, name: str, frames: np.ndarray, master: bool) -> dict:
    return {"shape": FRAME, "dtype": "uint16",
            "master_file": list(write_lima2_files(directory, *name.split(":"), frames, FRAME, master=master))}


def warnings_of(proxy, key: str) -> list[str]:
    return [proxy.GetWarning(json.dumps({"scan_key": key, "index": i})) for i in range(proxy.GetWarningCount(key))]


def test_mapped_lima2_linked_and_mosca_copied(writers, stack, data_dir):
    """Plugins installed, conductor reachable: at the mapped paths the Lima2 frames are the VDS over
    the master file (there during the scan, frames read from the master once written) and the
    Mosca spectra are copied by the writer ranks; no warning."""
    proxy = writers[PLUG]
    conductor = ConductorVersion()
    scan_dir = data_dir / "scan0011"
    frames = realistic_frames(7, FRAME, seed=11)
    data = spectra(2, 7, seed=11)
    saving = write_mosca_files(scan_dir, "fx", data, [0, 3], per_file=4, files=1)
    filename = str(data_dir / "mapped_plugins.h5")
    pub = MappedPluginScan(stack.env["REDIS_DATA_URL"], PLUG, filename, 11, 7,
                           lima2={"eiger:frame": lima2_channel(scan_dir, "eiger:frame", frames, master=False)},
                           mosca={d: {"size": SPECTRUM, "saving": saving} for d in (0, 3)},
                           conductor_port=conductor.port).create()
    client = MappingClient(PLUG)
    try:
        client.prepare(pub.scan.key)
        pub.prepare_start()
        pub.points(0, 5)
        pub.lima2_progress(2, 5)
        pub.mosca_status(4, 3)
        shape = wait_for("a 5-frame VDS at the mapped path during the scan",
                         lambda: (read_during_scan(filename, "11.1/instrument/eiger/frame") or ((0,), 0))[0][0] == 5
                         and read_during_scan(filename, "11.1/instrument/eiger/frame"))
        assert shape == ((5,) + FRAME, True)
        client.check()
        write_mosca_files(scan_dir, "fx", data, [0, 3], per_file=4, first_file=1)
        lima2_channel(scan_dir, "eiger:frame", frames, master=True)  # the conductor writes it at the end
        pub.points(5, 7)
        pub.lima2_progress(7)
        pub.mosca_status(6, 6)
        pub.stop_close()
        client.finalize()
        assert wait_scan_done(proxy, pub.scan.key) == "OFF", proxy.scan_state_reason(pub.scan.key)
    finally:
        conductor.stop()
    assert warnings_of(proxy, pub.scan.key) == [] and client.logged_warnings == []
    with h5py.File(filename, "r", locking=False) as f:
        e = f["11.1"]
        d = e["instrument/eiger/frame"]
        assert d.is_virtual and d.shape == (7,) + FRAME and d.dtype == np.uint16
        assert [s.file_name for s in d.virtual_sources()] == ["scan0011/eiger_frame_master.h5"]  # relative
        assert d.attrs["interpretation"] == "image"
        np.testing.assert_array_equal(d[()], frames)
        np.testing.assert_array_equal(e["measurement/eiger_frame"][()], frames)
        for i, det in enumerate((0, 3)):
            s = e[f"instrument/fx_det{det}/spectrum"]
            assert not s.is_virtual and s.chunks == (7, SPECTRUM)  # copied, whole spectra per chunk
            np.testing.assert_array_equal(s[()], data[i])
            np.testing.assert_array_equal(e[f"measurement/fx_det{det}"][()], data[i])
            np.testing.assert_array_equal(e[f"instrument/fx_det{det}/trigger_count_rate"][()],
                                          1000.0 + np.arange(7) + det)
        np.testing.assert_array_equal(e["diode"][()], 2.0 * np.arange(7))
        assert e["writer/status"][()] == b"SUCCEEDED"


def test_mapped_lima2_conductor_unreachable_is_a_warning(writers, stack, data_dir):
    """The conductor is gone when the writer loads the stream (BrokenPluginStream): the VDS at the
    mapped path all the same, the warning in GetWarning, the scan OFF (not FAULT)."""
    proxy = writers[PLUG]
    conductor = ConductorVersion()
    frames = realistic_frames(4, FRAME, seed=12)
    filename = str(data_dir / "mapped_unreachable.h5")
    pub = MappedPluginScan(stack.env["REDIS_DATA_URL"], PLUG, filename, 12, 4, conductor_port=conductor.port,
                           lima2={"eiger:frame": lima2_channel(data_dir / "scan0012", "eiger:frame", frames, True)})
    pub.create()
    conductor.stop()  # before the writer loads the scan
    client = MappingClient(PLUG)
    client.prepare(pub.scan.key)
    pub.prepare_start()
    pub.points(0, 4)
    pub.lima2_progress(1, 4)
    wait_for("the warning", lambda: any("eiger:frame" in w and "lima2" in w for w in warnings_of(proxy, pub.scan.key)))
    client.check()  # BLISS logs the warning and goes on (a FAULT would raise)
    assert any("eiger:frame" in w for w in client.logged_warnings)
    pub.stop_close()
    assert wait_scan_done(proxy, pub.scan.key) == "OFF", proxy.scan_state_reason(pub.scan.key)
    with h5py.File(filename, "r", locking=False) as f:
        np.testing.assert_array_equal(f["12.1/instrument/eiger/frame"][()], frames)
        assert f["12.1/writer/status"][()] == b"SUCCEEDED"


def test_mapped_plugins_missing_frames_copied_mosca_vds(writers, stack, data_dir):
    """Plugins not installed on the writer (MissingPluginStream): Lima2 frames copied on request
    (disable_external_hdf5 + copy_non_external), Mosca spectra a VDS over Mosca's files
    (mosca_vds), a Lima2 channel without master file leaves its mapped path empty; warnings, OFF."""
    proxy = writers[NOPLUG]
    conductor = ConductorVersion()
    scan_dir = data_dir / "scan0013"
    frames = realistic_frames(6, FRAME, seed=13)
    data = spectra(1, 9, seed=13)
    saving = write_mosca_files(scan_dir, "fx", data, [2], per_file=4)
    filename = str(data_dir / "mapped_noplug.h5")
    lima2 = {"eiger:frame": lima2_channel(scan_dir, "eiger:frame", frames, master=True),
             "eiger:unsaved": {"shape": FRAME, "dtype": "uint16", "master_file": None}}
    pub = MappedPluginScan(stack.env["REDIS_DATA_URL"], NOPLUG, filename, 13, 9, lima2=lima2,
                           mosca={2: {"size": SPECTRUM, "saving": saving}}, conductor_port=conductor.port).create()
    client = MappingClient(NOPLUG)
    try:
        client.prepare(pub.scan.key)
        pub.prepare_start()
        pub.points(0, 9)
        pub.lima2_progress(3, 6)
        pub.mosca_status(8, 8)
        wait_for("the warnings", lambda: all(text in " | ".join(warnings_of(proxy, pub.scan.key)) for text in (
            "eiger:frame: blissdata plugin 'lima2'", "not installed", "fx:spectrum:spec_det02: blissdata plugin 'mosca'",
            "eiger:unsaved: not saved by Lima2 (no master file): nothing written at /13.1/instrument/eiger/unsaved")))
        client.check()
        pub.stop_close()
        client.finalize()
        assert wait_scan_done(proxy, pub.scan.key) == "OFF", proxy.scan_state_reason(pub.scan.key)
    finally:
        conductor.stop()
    with h5py.File(filename, "r", locking=False) as f:
        e = f["13.1"]
        d = e["instrument/eiger/frame"]
        assert not d.is_virtual and d.shape == (6,) + FRAME and list(d._filters)  # copied, compressed
        np.testing.assert_array_equal(d[()], frames)
        assert d.attrs["interpretation"] == "image"
        assert "unsaved" not in e["instrument/eiger"]
        s = e["instrument/fx_det2/spectrum"]
        assert s.is_virtual and s.shape == (9, SPECTRUM)
        assert sorted({v.file_name for v in s.virtual_sources()}) == [f"scan0013/fx_spectra_{k:04d}.h5" for k in range(3)]
        np.testing.assert_array_equal(s[()], data[0])
        assert e["writer/status"][()] == b"SUCCEEDED"


def test_batch_writes_mapped_mosca_spectra_as_a_vds(stack, data_dir):
    """NexusWriterBatch (the same route without Tango) with --mosca-vds, on a scan already closed."""
    url = stack.env["REDIS_DATA_URL"]
    data = spectra(1, 6, seed=14)
    saving = write_mosca_files(data_dir / "scan0014", "fx", data, [1], per_file=4)
    filename = str(data_dir / "mapped_batch.h5")
    pub = MappedPluginScan(url, "mapbatch", filename, 14, 6, mosca={1: {"size": SPECTRUM, "saving": saving}}).create()
    pub.prepare_start()
    pub.points(0, 6)
    pub.mosca_status(5, 5)
    pub.stop_close()
    run = subprocess.run(batch_cmd(url, "--session", "mapbatch", "--existing", "--once", "--mosca-vds", ranks=2),
                         capture_output=True, text=True, env=batch_env(data_dir / "state"), timeout=180)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    with h5py.File(filename, "r", locking=False) as f:
        s = f["14.1/instrument/fx_det1/spectrum"]
        assert s.is_virtual and [v.file_name for v in s.virtual_sources()] == [
            "scan0014/fx_spectra_0000.h5", "scan0014/fx_spectra_0001.h5"]
        np.testing.assert_array_equal(s[()], data[0])
        np.testing.assert_array_equal(f["14.1/measurement/fx_det1"][()], data[0])
