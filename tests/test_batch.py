"""The Tango-less mode (issue 16): `mpirun -n 3 NexusWriterBatch REDIS_URL` on the real Redis."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from tango.server import device_property

from launch.simulate import ScanPublisher, ScanSpec, realistic_frames
from nxpar.protocol.options import SaveOptions
from nxpar.service.batch import build_parser, parse_args, save_options
from nxpar.service.bliss_writer import BlissWriter
from nxpar.service.nexus_writer import NexusWriter
from tests.helpers import ROOT, assert_file_matches
from tests.test_h5maps import scan_map


def batch_cmd(url: str, *args: str, ranks: int = 3) -> list[str]:
    return ["mpirun", "-n", str(ranks), sys.executable, "-m", "nxpar.service.batch", url, *args]


def batch_env(state_dir=None) -> dict[str, str]:
    """The journal of a batch run goes to its own state dir (NXPAR_STATE_DIR), not the machine's default."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if state_dir is not None:
        env["NXPAR_STATE_DIR"] = str(state_dir)
    return env


def publish_closed(url: str, spec: ScanSpec) -> ScanPublisher:
    pub = ScanPublisher(url, spec)
    pub.run(batch=3)
    return pub


def test_help_says_what_it_is_for():
    out = subprocess.run([sys.executable, "-m", "nxpar.service.batch", "--help"], capture_output=True, text=True,
                         env=batch_env(), check=True).stdout
    assert "without Tango" in out and "facilities without Tango" in out and "debugging" in out
    assert "re-writing" in out and "--session" in out and "--existing" in out


# device properties with no batch option of that name: --session and the positional REDIS_URL say them,
# and a batch run keeps every scan's record to its end (its summary), so nothing to purge
NOT_BATCH_OPTIONS = {"session", "redis_url", "purge_delay"}


def test_every_writer_option_of_the_devices_is_a_batch_option():
    """--<property> for each property of either Tango class, read into the very SaveOptions the
    NexusWriter device makes from the same property values."""
    helps = {a.option_strings[0]: a.help for a in build_parser()._actions if a.option_strings}
    for cls in (NexusWriter, BlissWriter):
        for name in {k for k, v in vars(cls).items() if isinstance(v, device_property)} - NOT_BATCH_OPTIONS:
            assert f"({name}" in helps.get(f"--{name.replace('_', '-')}", ""), (cls, name)
    props = {"keepshape": True, "multivalue_positioners": True, "enable_external_nonhdf5": True,
             "disable_external_hdf5": True, "copy_non_external": True, "mosca_vds": True, "noconfig": True,
             "required_disk_space": 50.0, "recommended_disk_space": 500.0}
    args = parse_args(["redis://h:1", "--keepshape", "--multivalue-positioners", "--enable-external-nonhdf5",
                       "--disable-external-hdf5", "--copy-non-external", "--mosca-vds", "--noconfig",
                       "--required-disk-space", "50", "--recommended-disk-space", "500"])
    assert save_options(args) == NexusWriter._save_options(SimpleNamespace(**props))
    assert save_options(args) != SaveOptions()
    assert save_options(parse_args(["redis://h:1"])) == SaveOptions()  # the devices' defaults
    only_copy = save_options(parse_args(["redis://h:1", "--copy-non-external", "--disable-external-hdf5"]))
    assert only_copy == SaveOptions(allow_external_hdf5=False, copy_non_external=True)


def test_batch_writes_a_sessions_existing_scans(stack, tmp_path):
    """No Tango device serves these sessions: only the batch run can have written the files."""
    url = stack.env["REDIS_DATA_URL"]
    nexus = publish_closed(url, ScanSpec("batch_a", str(tmp_path / "nexus.h5"), 1, 7, image_shape=(8, 8)))
    mapped_file, raw_file = str(tmp_path / "mapped.h5"), str(tmp_path / "raw.bin")
    np.arange(12, dtype="<u2").tofile(raw_file)
    mapped = publish_closed(url, ScanSpec("batch_a", mapped_file, 2, 5, image_shape=(16, 12), mca_channels=None,
                                          data_writer="mapping",
                                          extra_info={"h5maps": scan_map(mapped_file, raw_file, 5)}))
    other = publish_closed(url, ScanSpec("batch_b", str(tmp_path / "other.h5"), 1, 3, image_shape=None))
    run = subprocess.run(batch_cmd(url, "--session", "batch_a", "--existing", "--once"), capture_output=True,
                         text=True, env=batch_env(tmp_path / "state"), timeout=180)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert_file_matches(nexus, 7)  # the spec §4 tree, as the NexusWriter device writes it
    with h5py.File(mapped_file, "r", locking=False) as f:  # the h5map tree, as the BlissWriter device writes it
        np.testing.assert_array_equal(f["1.1/instrument/cam/data"][()], mapped.expected("cam:image", 5))
        np.testing.assert_array_equal(f["1.1/measurement/diode"][()], mapped.expected("diode_ctrl:diode", 5))
        assert f["1.1/writer/status"][()] == b"SUCCEEDED"
    assert not os.path.exists(other.spec.filename)  # another session
    assert f"scan 1_ascan ({nexus.scan.key}): OFF Finished succesfully" in log
    assert f"scan 2_ascan ({mapped.scan.key}): OFF Finished succesfully" in log
    assert "2 scan(s) OFF (written, or not to be saved), 0 FAULT" in log
    assert "[rank 0]" in log and "batch: writing scan 1_ascan" in log


def test_batch_reports_a_fault_in_its_exit_status(stack, tmp_path):
    url = stack.env["REDIS_DATA_URL"]
    bad = {str(tmp_path / "bad.h5"): {"type": "group", "children": {"1.1": {"type": "virtual_dataset"}}}}
    pub = publish_closed(url, ScanSpec("batch_bad", str(tmp_path / "bad.h5"), 1, 3, image_shape=None,
                                       data_writer="mapping", extra_info={"h5maps": bad}))
    run = subprocess.run(batch_cmd(url, "--session", "batch_bad", "--existing", "--once", ranks=2),
                         capture_output=True, text=True, env=batch_env(tmp_path / "state"), timeout=180)
    log = run.stdout + run.stderr
    assert run.returncode == 1, log[-4000:]
    assert f"scan 1_ascan ({pub.scan.key}): FAULT" in log and "is not a valid blissdata h5map" in log
    assert "0 scan(s) OFF (written, or not to be saved), 1 FAULT" in log


def test_batch_follows_new_scans_until_interrupted(stack, tmp_path):
    url = stack.env["REDIS_DATA_URL"]
    old = publish_closed(url, ScanSpec("batch_f", str(tmp_path / "old.h5"), 1, 3, image_shape=None))
    logfile = tmp_path / "batch.log"
    with open(logfile, "w") as out:
        proc = subprocess.Popen(batch_cmd(url, "--session", "batch_f"), stdout=out, stderr=subprocess.STDOUT,
                                env=batch_env(tmp_path / "state"), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "writing session 'batch_f' scans" not in logfile.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, logfile.read_text()[-3000:]
            time.sleep(0.1)
        new = publish_closed(url, ScanSpec("batch_f", str(tmp_path / "new.h5"), 2, 6, image_shape=(8, 8)))
        while f"scan 2_ascan ({new.scan.key})" not in logfile.read_text() and not os.path.exists(new.spec.filename):
            assert time.monotonic() < deadline, logfile.read_text()[-3000:]
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # mpirun forwards it; rank 0 lets the running scan finish
        assert proc.wait(timeout=60) == 0, logfile.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert_file_matches(new, 6)
    assert not os.path.exists(old.spec.filename)  # published before the run: not written without --existing
    assert "1 scan(s) OFF (written, or not to be saved), 0 FAULT" in logfile.read_text()


def test_batch_copies_lima2_frames_on_request(stack, tmp_path):
    """--disable-external-hdf5 --copy-non-external: Lima2 frames copied from the master file into the
    scan file, in the nexus tree and at an h5map's stream dataset (as the devices do with those properties)."""
    pytest.importorskip("blissdata_lima2")
    pytest.importorskip("blissdata_mosca")
    from tests.plugin_publish import ConductorVersion, PluginScan
    from tests.test_mapping_route_plugins import FRAME, MappedPluginScan, lima2_channel

    url = stack.env["REDIS_DATA_URL"]
    conductor = ConductorVersion()
    try:
        pubs, frames = {}, {}
        for nb, cls in ((21, MappedPluginScan), (22, PluginScan)):
            frames[nb] = realistic_frames(5, FRAME, seed=nb)
            lima2 = {"eiger:frame": lima2_channel(tmp_path / f"scan{nb:04d}", "eiger:frame", frames[nb], master=True)}
            pub = pubs[nb] = cls(url, "batch_lima2", str(tmp_path / f"lima2_{nb}.h5"), nb, 5, lima2=lima2,
                                 conductor_port=conductor.port).create()
            pub.prepare_start()
            pub.points(0, 5)
            pub.lima2_progress(2, 5)
            pub.stop_close()
        run = subprocess.run(batch_cmd(url, "--session", "batch_lima2", "--existing", "--once",
                                       "--disable-external-hdf5", "--copy-non-external", ranks=2),
                             capture_output=True, text=True, env=batch_env(tmp_path / "state"), timeout=180)
    finally:
        conductor.stop()
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert "2 scan(s) OFF (written, or not to be saved), 0 FAULT" in log
    for nb, pub in pubs.items():
        with h5py.File(pub.filename, "r", locking=False) as f:
            d = f[f"{nb}.1/instrument/eiger/frame"]
            assert not d.is_virtual and d.shape == (5,) + FRAME and list(d._filters), nb  # copied, compressed
            np.testing.assert_array_equal(d[()], frames[nb])
