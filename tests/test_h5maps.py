"""blissdata h5maps: when the publisher sends the file's map, nxpar writes exactly that tree (issue 4)."""
from __future__ import annotations

import json

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle-LZ4 frames)
import numpy as np
from blissdata import h5map as h5m

from launch.simulate import ScanSpec
from tests.helpers import start_scan, wait_scan_done


def scan_map(filename: str, raw_file: str, npoints: int, final: bool = False) -> dict:
    entry = {
        "title": h5m.Dataset(value="ascan robx 0 1 5 0.1"),
        "instrument": h5m.Group(attributes={"NX_class": "NXinstrument"}, children={
            "cam": h5m.Group(attributes={"NX_class": "NXdetector"}, children={
                "data": h5m.Dataset(value=h5m.Stream(stream="cam:image"),
                                    attributes={"interpretation": "image"})}),
            "diode": h5m.Group(attributes={"NX_class": "NXdetector"}, children={
                "data": h5m.Dataset(value=h5m.Stream(stream="diode_ctrl:diode"), attributes={"units": "mV"})}),
        }),
        "measurement": h5m.Group(attributes={"NX_class": "NXcollection"}, children={
            "cam": h5m.SoftLink(target_path="/1.1/instrument/cam/data"),
            "diode": h5m.SoftLink(target_path="../instrument/diode/data")}),
        "gains": h5m.Dataset(value=h5m.Inline(value=[1.5, "nan"], dtype="float32")),
        "labels": h5m.Dataset(value=h5m.InlineRaw(["a", "bé"])),
        "table": h5m.Dataset(value=h5m.Compound(columns=[("name", h5m.InlineRaw(["x", "yz"])),
                                                         ("gain", h5m.InlineRaw([1, 2]))])),
        "raw": h5m.ExternalBinaryDataset(dtype="<u2", shape=[2, 5],
                                         files=[h5m.ExternalBinaryFile(name=raw_file, offset=4, size=20)]),
        "diode_twice": h5m.VirtualDataset(dtype="<f8", shape=[2 * npoints], virtual_sources=[
            h5m.VirtualSource(vspace=h5m.SpaceSelection(start=[k * npoints], count=[npoints]), src_file=".",
                              src_dataset="/1.1/instrument/diode/data",
                              src_space=h5m.SpaceSelection(start=[0], count=[npoints])) for k in (0, 1)]),
    }
    if final:
        entry["end_reason"] = h5m.Dataset(value="SUCCESS")
    root = h5m.Group(attributes={"default": h5m.InlineRaw("1.1")}, children={
        "1.1": h5m.Group(attributes={"NX_class": "NXentry"}, children=entry)})
    # as JSON, the way it travels in scan_info (raw inline values dump as numpy arrays)
    return {filename: json.loads(json.dumps(root.model_dump(), default=lambda a: a.tolist()))}


def test_h5map_tree_is_written_as_published(services, stack, data_dir):
    proxy = services.get(3)["n3"]
    filename, raw_file = str(data_dir / "mapped.h5"), str(data_dir / "frames.raw")
    raw = np.arange(12, dtype="<u2")
    raw.tofile(raw_file)  # 4 header bytes, then 10 values
    spec = ScanSpec("n3", filename, 1, 6, image_shape=(16, 12), mca_channels=None,
                    extra_info={"h5maps": scan_map(filename, raw_file, 6)})
    pub = start_scan(proxy, stack.env["REDIS_DATA_URL"], spec, 6, batch=4)
    pub.stop_close(final_info={"h5maps": scan_map(filename, raw_file, 6, final=True)})  # completed at close
    assert wait_scan_done(proxy, spec.name) == "OFF", proxy.scan_state_reason(spec.name)
    with h5py.File(filename, "r", locking=False) as f:
        assert f.attrs["default"] == "1.1"
        e = f["1.1"]
        assert e.attrs["NX_class"] == "NXentry" and e["title"][()] == b"ascan robx 0 1 5 0.1"
        np.testing.assert_array_equal(e["instrument/cam/data"][()], pub.expected("cam:image", 6))
        np.testing.assert_array_equal(e["measurement/diode"][()], pub.expected("diode_ctrl:diode", 6))
        assert e["measurement/cam"].attrs["interpretation"] == "image"
        assert e["instrument/diode/data"].attrs["units"] == "mV"
        gains = e["gains"][()]
        assert gains.dtype == np.float32 and gains[0] == 1.5 and np.isnan(gains[1])
        assert [v.decode() for v in e["labels"][()]] == ["a", "bé"]
        assert e["table"]["name"].tolist() == [b"x", b"yz"] and e["table"]["gain"].tolist() == [1, 2]
        np.testing.assert_array_equal(e["raw"][()], raw[2:].reshape(2, 5))
        assert e["raw"].external[0][1:] == (4, 20)
        np.testing.assert_array_equal(e["diode_twice"][()], np.tile(pub.expected("diode_ctrl:diode", 6), 2))
        assert e["end_reason"][()] == b"SUCCESS"
        assert e["writer/status"][()] == b"SUCCEEDED"
        assert "robx" not in e["instrument"]  # streams the map does not mention are not written
        assert "positioners" not in e["instrument"] and "plotselect" not in e


def test_malformed_h5map_faults_the_scan(services, stack, data_dir):
    proxy = services.get(3)["n3"]
    filename = str(data_dir / "bad.h5")
    bad = {filename: {"type": "group", "children": {"1.1": {"type": "virtual_dataset", "dtype": "<f8"}}}}
    spec = ScanSpec("n3", filename, 2, 3, image_shape=None, mca_channels=None, extra_info={"h5maps": bad})
    pub = start_scan(proxy, stack.env["REDIS_DATA_URL"], spec, 3)
    pub.stop_close()
    assert wait_scan_done(proxy, spec.name) == "FAULT"
    assert "is not a valid blissdata h5map" in proxy.scan_state_reason(spec.name)
