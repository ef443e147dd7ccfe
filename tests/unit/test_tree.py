"""apply_nodes (writers/tree.py) on a plain serial HDF5 file: what each node operation does."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from nxpar.protocol.steps import Node, NodeOp
from nxpar.writers.tree import apply_nodes, set_root_attrs


@pytest.fixture
def f(tmp_path):
    with h5py.File(tmp_path / "t.h5", "w") as fh:
        yield fh


def test_groups_values_and_attributes(f):
    apply_nodes(f, [Node("group", "/1.1", attrs={"NX_class": "NXentry"}),
                    Node(NodeOp.VALUE, "/1.1/title", "température ✓", attrs={"units": "none"}),
                    Node(NodeOp.VALUE, "/1.1/labels", ["a", "bé"]),
                    Node(NodeOp.VALUE, "/1.1/gains", np.array([1.5, 2.0])),
                    Node(NodeOp.ATTRS, "/", attrs={"default": "1.1"}),
                    Node(NodeOp.ATTRS, "/1.1/missing", attrs={"x": 1})])  # attrs of nothing: ignored
    assert f["1.1"].attrs["NX_class"] == "NXentry" and f.attrs["default"] == "1.1"
    title = f["1.1/title"]
    assert title.dtype.kind == "S" and title[()].decode() == "température ✓"  # fixed-length UTF-8
    assert [v.decode() for v in f["1.1/labels"][()]] == ["a", "bé"]
    np.testing.assert_array_equal(f["1.1/gains"][()], [1.5, 2.0])
    assert "missing" not in f["1.1"]


def test_values_are_kept_unless_overwritten(f):
    apply_nodes(f, [Node("value", "/status", "STARTING"), Node("value", "/status", "RUNNING")])
    assert f["status"][()] == b"STARTING"
    apply_nodes(f, [Node("value", "/status", "SUCCEEDED", overwrite=True)])
    assert f["status"][()] == b"SUCCEEDED"


def test_links_replace_only_when_asked_and_delete_removes(f):
    apply_nodes(f, [Node("group", "/g"), Node("value", "/g/data", 1.0), Node("value", "/g/other", 2.0),
                    Node("softlink", "/g/alias", target="data"),
                    Node("softlink", "/g/alias", target="other"),  # kept: no overwrite
                    Node("extlink", "/ext", target="/1.1", target_file="other.h5")])
    assert f["g"].get("alias", getlink=True).path == "data" and f["g/alias"][()] == 1.0
    apply_nodes(f, [Node("softlink", "/g/alias", target="other", overwrite=True), Node("delete", "/g/data")])
    assert f["g/alias"][()] == 2.0 and "data" not in f["g"]
    link = f.get("ext", getlink=True)
    assert isinstance(link, h5py.ExternalLink) and (link.filename, link.path) == ("other.h5", "/1.1")


def test_virtual_datasets_read_their_sources(f, tmp_path):
    with h5py.File(tmp_path / "src.h5", "w") as src:
        src["frames"] = np.arange(4 * 2 * 3).reshape(4, 2, 3).astype("uint16")
    vds = {"shape": (3, 2, 3), "dtype": "uint16", "fillvalue": 0,
           "sources": [(str(tmp_path / "src.h5"), "frames", (4, 2, 3), 1, 0, 3)]}
    mapped = {"shape": (3, 2), "dtype": "<f8", "fillvalue": np.nan,  # row 2 is mapped to nothing
              "sources": [(".", "/flat", {"start": [0, 0], "count": [1, 2]}, {"start": [0], "count": [2]}),
                          (".", "/flat", {"start": [1, 0], "count": [1, 2]}, {"start": [2], "count": [2]})]}
    f["flat"] = np.array([1.0, 2.0, 3.0, 4.0])
    apply_nodes(f, [Node("vds", "/frames", vds, attrs={"interpretation": "image"}),
                    Node("vds_map", "/grid", mapped)])
    np.testing.assert_array_equal(f["frames"][()], np.arange(24).reshape(4, 2, 3)[1:4])
    assert f["frames"].attrs["interpretation"] == "image"
    grid = f["grid"][()]
    np.testing.assert_array_equal(grid[:2], [[1.0, 2.0], [3.0, 4.0]])
    assert np.isnan(grid[2]).all()  # points mapped to nothing read as the fill value


def test_external_datasets_read_raw_bytes_of_other_files(f, tmp_path):
    raw = tmp_path / "frames.raw"
    raw.write_bytes(b"HEAD" + np.arange(10, dtype="<u2").tobytes())
    apply_nodes(f, [Node("external", "/raw", {"shape": (2, 5), "dtype": "<u2", "files": [(str(raw), 4, 20)]})])
    np.testing.assert_array_equal(f["raw"][()], np.arange(10).reshape(2, 5))


def test_an_unknown_operation_is_refused_when_the_node_is_made():
    with pytest.raises(ValueError, match="rename"):
        Node("rename", "/x")


def test_root_attributes_are_set_once(f):
    set_root_attrs(f, {"NX_class": "NXroot", "file_name": "a"})
    set_root_attrs(f, {"NX_class": "NXroot", "file_name": "b"})
    assert f.attrs["file_name"] == "a"
