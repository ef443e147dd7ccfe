"""NeXus layout beyond the basic tree: validation with punx, subscans, master files (docs/interface.md §4.1, §4.7)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from blissdata.streams.default import Stream

from launch.simulate import ScanPublisher, ScanSpec
from tests.helpers import assert_file_matches, run_scan, wait_scan_done, wait_scan_exists

ROOT = Path(__file__).resolve().parent.parent
PUNX = ROOT / ".venv-punx" / "bin" / "punx"


PLOTS = {"display_extra": {"displayed_channels": ["simu1:spectrum_det0", "cam:image", "diode_ctrl:diode"]}}


@pytest.mark.parametrize("kind", ["ascan", "mesh"])
def test_file_passes_punx_validation(services, stack, data_dir, kind):
    """No ERROR but the entry name one the ESRF layout itself produces ('1.1' is not a NeXus name);
    mesh: plots split by detector shape, grids as virtual datasets, datadim axes."""
    proxy = services.get(2)["n2"]
    extra = {"grid": (3, 2), "extra_info": PLOTS} if kind == "mesh" else {}
    spec = ScanSpec("n2", str(data_dir / "valid.h5"), 1, 6 if kind == "mesh" else 5, image_shape=(32, 32),
                    mca_channels=64, **extra)
    run_scan(proxy, stack.env["REDIS_DATA_URL"], spec)
    out = subprocess.run([str(PUNX), "validate", spec.filename], capture_output=True, text=True, timeout=300,
                         cwd=data_dir).stdout
    assert "summary statistics" in out, out[-2000:]
    errors = [line for line in out.splitlines() if " ERROR " in line and line.startswith("/")]
    assert [e.split()[0] for e in errors] == ["/1.1"], errors
    assert "valid HDF5 item name, not valid with NeXus" in errors[0]


def test_subscans_get_one_entry_per_top_master(services, stack, data_dir):
    """Two top masters: entries numbered by the alphabetical order of the top master names."""
    proxy = services.get(3)["n3"]
    spec = ScanSpec("n3", str(data_dir / "subscans.h5"), 5, 6, image_shape=(16, 16), mca_channels=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    info = pub.info
    info["acquisition_chain"]["a_fast"] = {"top_master": "2001:fast", "devices": ["2001:fast", "2002:fastdiode"]}
    info["devices"]["2001:fast"] = {"name": "fast", "channels": ["fast:epoch"], "triggered_devices": ["2002:fastdiode"]}
    info["devices"]["2002:fastdiode"] = {"name": "fastdiode", "channels": ["fastdiode:diode2"]}
    info["channels"]["fast:epoch"] = {"device": "2001:fast", "dim": 0, "unit": "s"}
    info["channels"]["fastdiode:diode2"] = {"device": "2002:fastdiode", "dim": 0}
    fast = {n: pub.scan.create_stream(Stream.make_definition(n, "float64", ())) for n in ("fast:epoch", "fastdiode:diode2")}
    wait_scan_exists(proxy, spec.name)
    pub.prepare_start()
    pub.send(6, batch=3)
    for i, stream in enumerate(fast.values()):
        stream.send(np.arange(20, dtype=float) * (i + 1))
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name) == "OFF", proxy.scan_state_reason(spec.name)
    assert list(proxy.scan_url(spec.name)) == [f"{spec.filename}::/5.1", f"{spec.filename}::/5.2"]
    assert_file_matches(pub, 6, entry="5.2")  # "axis" sorts after "a_fast"
    with h5py.File(spec.filename, "r", locking=False) as f:
        np.testing.assert_array_equal(f["5.1/instrument/epoch/value"][()], np.arange(20.0))
        np.testing.assert_array_equal(f["5.1/instrument/diode2/data"][()], np.arange(20.0) * 2)
        assert f["5.1/title"][()] == f["5.2/title"][()]
    assert any(line.startswith("5_ascan:5.1:") for line in proxy.scan_progress)


def test_master_file_links(services, stack, data_dir):
    """ESRF policy: the collection and proposal files link to the dataset file's entries."""
    proxy = services.get(2)["n2"]
    dataset_dir = data_dir / "RAW_DATA" / "sample" / "sample_0001"
    filename = str(dataset_dir / "sample_0001.h5")
    collection = str(data_dir / "RAW_DATA" / "ihch123_sample.h5")
    proposal = str(data_dir / "ihch123_id00.h5")
    spec = ScanSpec("n2", filename, 3, 4, image_shape=None)
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    pub.info["nexuswriter"]["masterfiles"] = {"dataset_collection": collection, "proposal": proposal}
    wait_scan_exists(proxy, spec.name)
    pub.run()
    assert wait_scan_done(proxy, spec.name) == "OFF", proxy.scan_state_reason(spec.name)
    for master, rel in ((collection, "sample/sample_0001/sample_0001.h5"),
                        (proposal, "RAW_DATA/sample/sample_0001/sample_0001.h5")):
        with h5py.File(master, "r", locking=False) as f:
            link = f.get("sample_0001_3.1", getlink=True)
            assert isinstance(link, h5py.ExternalLink) and (link.filename, link.path) == (rel, "/3.1")
            assert f.attrs["NX_class"] == "NXroot"
            np.testing.assert_array_equal(f["sample_0001_3.1/instrument/robx/value"][()], pub.expected("axis:robx", 4))


def test_separate_scan_files(services, stack, data_dir):
    """writer_options.separate_scan_files: the scan goes to scan0007/bliss_master.h5, the dataset file links it."""
    proxy = services.get(2)["n2"]
    dataset_file = str(data_dir / "data.h5")
    spec = ScanSpec("n2", dataset_file, 7, 4, image_shape=(8, 8))
    pub = ScanPublisher(stack.env["REDIS_DATA_URL"], spec)
    pub.info["writer_options"]["separate_scan_files"] = True
    pub.info["images_path"] = str(data_dir / "scan0007" / "{img_acq_device}_")
    pub.info["nexuswriter"]["masterfiles"] = {}
    wait_scan_exists(proxy, spec.name)
    pub.run()
    assert wait_scan_done(proxy, spec.name) == "OFF", proxy.scan_state_reason(spec.name)
    scan_file = str(data_dir / "scan0007" / "bliss_master.h5")
    assert list(proxy.scan_url(spec.name)) == [f"{scan_file}::/7.1"]
    with h5py.File(scan_file, "r", locking=False) as f:
        np.testing.assert_array_equal(f["7.1/instrument/robx/value"][()], pub.expected("axis:robx", 4))
    with h5py.File(dataset_file, "r", locking=False) as f:
        link = f.get("7.1", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and (link.filename, link.path) == ("scan0007/bliss_master.h5", "/7.1")
        assert f["7.1/instrument/image/data"].shape == (4, 8, 8)


SNAPSHOT = {"Sample_name": "lysozyme", "Sample_description": "crystal A", "Sample_notes": "mounted 10:02",
            "SamplePositioners_name": "samx samy", "SamplePositioners_value": "1.0 2.0",
            "InstrumentSource_mode": "7/8 multibunch"}


def test_esrf_sample_metadata(services, stack, data_dir):
    """data_policy ESRF: the Sample* keys of the dataset metadata snapshot become NXsample (pyicat-plus);
    other keys and the SamplePositioners_* pair are not written; no ESRF policy → no sample group."""
    proxy = services.get(2)["n2"]
    url = stack.env["REDIS_DATA_URL"]
    esrf = ScanSpec("n2", str(data_dir / "esrf.h5"), 1, 4, image_shape=None, mca_channels=None,
                    extra_info={"data_policy": "ESRF", "dataset_metadata_snapshot": SNAPSHOT})
    other = ScanSpec("n2", str(data_dir / "esrf.h5"), 2, 4, image_shape=None, mca_channels=None,
                     extra_info={"dataset_metadata_snapshot": SNAPSHOT})
    for spec in (esrf, other):
        assert_file_matches(run_scan(proxy, url, spec), 4)
    with h5py.File(esrf.filename, "r", locking=False) as f:
        sample = f["1.1/sample"]
        assert sample.attrs["NX_class"] == "NXsample"
        assert sample["name"][()] == b"lysozyme" and sample["description"][()] == b"crystal A"
        assert sample["notes"].attrs["NX_class"] == "NXnote" and sample["notes/notes"][()] == b"mounted 10:02"
        assert not any("ositioner" in name for name in sample)
        assert "source" not in f["1.1/instrument"] and "sample" not in f["2.1"]
