"""h5map parsing (nexus/h5map_plan.py): a publisher's file map becomes nodes and array specs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from blissdata import h5map as h5m

from launch.simulate import ScanSpec, scan_info
from nxpar.nexus.h5map_plan import H5MapPlan
from nxpar.protocol.options import SaveOptions
from nxpar.protocol.steps import NodeOp


def mapped_info(filename: str, root: h5m.Group, others: dict | None = None) -> dict:
    info = scan_info(ScanSpec("s", filename, 1, 5, mca_channels=None))
    maps = {filename: root, **(others or {})}
    info["h5maps"] = {k: json.loads(json.dumps(v.model_dump(), default=lambda a: a.tolist())) for k, v in maps.items()}
    return info


def entry(children: dict) -> h5m.Group:
    return h5m.Group(children={"1.1": h5m.Group(attributes={"NX_class": "NXentry"}, children=children)})


def test_streams_become_array_specs_at_their_mapped_path():
    info = mapped_info("/d/x.h5", entry({
        "diode": h5m.Dataset(value=h5m.Stream(stream="diode_ctrl:diode"), attributes={"units": "mV"}),
        "link": h5m.SoftLink(target_path="../1.1/diode"),
        "gains": h5m.Dataset(value=h5m.Inline(value=[1.5, 2.5], dtype="float32")),
        "labels": h5m.Dataset(value=h5m.InlineRaw(["a", "bé"]))}))
    plan = H5MapPlan(info, SaveOptions())
    assert plan.entry_names == ["1.1"] and plan.wants("diode_ctrl:diode") and not plan.wants("cam:image")
    spec = plan.array_spec("diode_ctrl:diode", "float64", ())
    assert spec.path == "/1.1/diode" and spec.attrs == {"units": "mV"}
    nodes = {n.path: n for n in plan.skeleton()}
    assert "/1.1/diode" not in nodes  # stream datasets are made by the writers with their first rows
    assert nodes["/1.1/link"].op == NodeOp.SOFTLINK and nodes["/1.1/link"].target == "/1.1/diode"  # no '..'
    np.testing.assert_array_equal(nodes["/1.1/gains"].value, np.array([1.5, 2.5], dtype="float32"))
    assert nodes["/1.1/labels"].value == ["a", "bé"]
    assert nodes["/1.1/writer/status"].value == "STARTING"
    final = plan.final_nodes({}, failed=True, written=set())
    assert [n.value for n in final if n.path == "/1.1/writer/status"] == ["FAILED"]


@pytest.mark.parametrize("maps,message", [
    (lambda f: {"/d/other.h5": entry({})}, "no map for the scan file /d/x.h5"),
    (lambda f: {f: {"children": 3}}, "is not a valid blissdata h5map"),
])
def test_malformed_maps_are_refused_naming_the_problem(maps, message):
    info = mapped_info("/d/x.h5", entry({}))
    info["h5maps"] = {k: (v.model_dump() if isinstance(v, h5m.Group) else v) for k, v in maps("/d/x.h5").items()}
    with pytest.raises(ValueError, match=message):
        H5MapPlan(info, SaveOptions())


def test_a_stream_mapped_twice_or_into_another_file_is_refused():
    twice = entry({"a": h5m.Dataset(value=h5m.Stream(stream="s1")), "b": h5m.Dataset(value=h5m.Stream(stream="s1"))})
    with pytest.raises(ValueError, match="mapped twice"):
        H5MapPlan(mapped_info("/d/x.h5", twice), SaveOptions())
    other = entry({"a": h5m.Dataset(value=h5m.Stream(stream="s1"))})
    with pytest.raises(ValueError, match="streams can only go to the scan file"):
        H5MapPlan(mapped_info("/d/x.h5", entry({}), {"/d/master.h5": other}), SaveOptions())
