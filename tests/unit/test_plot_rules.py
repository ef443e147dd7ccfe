"""nxpar/nexus/plots.py: which channels a flat mesh's plot shows on its grid (no I/O).

blisswriter 2.0.0 reshapes flat data to the grid only when its points fill the grid exactly
(writer/plots.py, NXdataWriter.add_signal, lines 218-234: "Cannot reshape … for plot"), so with
BLISS's FakeController (npoints + 1 points) `plotinit(fake2D, fake1D, sdiode); amesh(...)` gives one
`plotselect` NXdata holding sdiode, not one NXdata per detector shape. Checked against the reference
writer itself on real BLISS scans (tests/bliss/test_meshes.py has the real-BLISS scenario).
"""
from __future__ import annotations

import numpy as np
import pytest

from launch.simulate import ScanSpec, scan_info
from nxpar.nexus.channel_mapping import ChannelMap
from nxpar.nexus.plan import ScanPlan
from nxpar.nexus.plots import Plotted, fits_grid, plot_nodes
from nxpar.protocol.options import SaveOptions

GRID = (3, 4)  # amesh(robx, 0, 1, 3, roby, 0, 1, 2): roby slow (3 lines), robx fast (4 points)
AXES = ["axis:roby", "axis:robx"]
VALUES = {"axis:robx": np.linspace(0, 1, 4), "axis:roby": np.linspace(0, 1, 3)}
WANTED = ["fake_ctrl:fake2D", "fake_ctrl:fake1D", "sdiode"]


def plotted(name: str, device_type: str, shape: tuple[int, ...], rows: int, master: int = -1) -> Plotted:
    short = name.split(":")[-1]
    m = ChannelMap(name, device_type=device_type, device_name=short, unique_name=short, master_index=master,
                   data_name="value" if master >= 0 else "data")
    return Plotted(name, m, len(shape), "float64", shape, rows)


def mesh_items(fake_rows: int, diode_rows: int = 12, motor_rows: int = 12) -> list[Plotted]:
    return [plotted("axis:robx", "positioner", (), motor_rows, master=0),
            plotted("axis:roby", "positioner", (), motor_rows, master=1),
            plotted("fake_ctrl:fake2D", "", (32, 32), fake_rows), plotted("fake_ctrl:fake1D", "", (64,), fake_rows),
            plotted("ctrl:sdiode", "samplingcounter", (), diode_rows)]


def by_op(nodes, op: str) -> dict:
    return {n.path: n for n in nodes if n.op == op}


def test_detectors_with_one_point_too_many_are_left_out_of_the_mesh_plot():
    """The real-BLISS case: fake2D/fake1D have 13 points for a 12-point grid → one `plotselect`
    (not a link), sdiode on the grid, no plotselect_unknown1D/_unknown2D/_samplingcounter."""
    nodes = plot_nodes("1.1", mesh_items(fake_rows=13), WANTED, GRID, False, VALUES, AXES)
    groups = by_op(nodes, "group")
    assert list(groups) == ["/1.1/plotselect"]
    assert groups["/1.1/plotselect"].attrs == {"NX_class": "NXdata", "signal": "sdiode", "axes": ["roby", "robx"]}
    assert "/1.1/plotselect" not in by_op(nodes, "softlink")
    vds = by_op(nodes, "vds_map")
    assert list(vds) == ["/1.1/plotselect/sdiode"] and vds["/1.1/plotselect/sdiode"].value["shape"] == GRID
    assert by_op(nodes, "attrs")["/1.1"].attrs == {"default": "plotselect"}


def test_detectors_that_fill_the_grid_keep_their_own_nxdata():
    """Same plotinit, every channel 12 points: split by detector shape as before; `plotselect` links the
    NXdata whose signal names sort last (('fake1D',) < ('fake2D',) < ('sdiode',))."""
    nodes = plot_nodes("1.1", mesh_items(fake_rows=12), WANTED, GRID, False, VALUES, AXES)
    assert set(by_op(nodes, "group")) == {"/1.1/plotselect_unknown1D", "/1.1/plotselect_unknown2D",
                                          "/1.1/plotselect_samplingcounter"}
    assert by_op(nodes, "softlink")["/1.1/plotselect"].target == "/1.1/plotselect_samplingcounter"
    assert by_op(nodes, "vds_map")["/1.1/plotselect_unknown2D/fake2D"].value["shape"] == GRID + (32, 32)


def test_no_plot_when_no_selected_channel_fits():
    nodes = plot_nodes("1.1", mesh_items(fake_rows=13), WANTED[:2], GRID, False, VALUES, AXES)
    assert nodes == []


def test_keepshape_datasets_are_linked_whatever_their_rows():
    """keepshape: the datasets have the grid shape already; blisswriter links them (no reshape, no check)."""
    nodes = plot_nodes("1.1", mesh_items(fake_rows=13), WANTED, GRID, True, VALUES, AXES)
    assert "/1.1/plotselect_unknown2D" in by_op(nodes, "group") and not by_op(nodes, "vds_map")


@pytest.mark.parametrize("rows,motor_rows,grid,shown", [
    (12, 12, (3, 4), True),     # fills the grid
    (13, 12, (3, 4), False),    # one too many (FakeController): blisswriter "Cannot reshape"
    (11, 12, (3, 4), False),    # a complete mesh, a channel short of it: blisswriter leaves it out too
    (7, 7, (3, 4), True),       # an aborted mesh: what came, NaN elsewhere (nxpar's incomplete grids)
    (6, 7, (3, 4), True),       # a channel lagging in an aborted mesh
    (13, 7, (3, 4), False),     # more than the grid holds
    (15, 15, (4, 4), True),     # an overrun: the slow axis grown to 4 lines
    (None, 12, (3, 4), True),   # rows not known
    (13, None, (3, 4), False),  # motors not known: blisswriter's rule
])
def test_fits_grid(rows, motor_rows, grid, shown):
    assert fits_grid(rows, grid, motor_rows) is shown


def test_scan_plan_passes_the_rows_written_to_the_plot():
    """ScanPlan.final_nodes(written={stream: rows}): the same choice from a mesh's scan_info."""
    wanted = ["fake_ctrl:fake2D", "fake_ctrl:fake1D", "diode_ctrl:diode"]
    info = scan_info(ScanSpec("s", "/d/x.h5", 1, 12, image_shape=None, mca_channels=None, grid=(4, 3), fakes=True,
                              extra_info={"display_extra": {"displayed_channels": wanted}}))
    plan = ScanPlan(info, SaveOptions())
    shapes = {"fake_ctrl:fake1D": (8,), "fake_ctrl:fake2D": (6, 5)}
    for name in plan.channels:
        plan.array_spec(name, "float64", shapes.get(name, ()))
    written = {name: 13 if name.startswith("fake_ctrl:") else 12 for name in plan.channels}
    nodes = plan.final_nodes({}, False, written, VALUES)
    groups = {p: n.attrs for p, n in by_op(nodes, "group").items() if "plotselect" in p}
    assert groups == {"/1.1/plotselect": {"NX_class": "NXdata", "signal": "diode", "axes": ["roby", "robx"]}}
    nodes = plan.final_nodes({}, False, {name: 12 for name in plan.channels}, VALUES)
    assert {p for p in by_op(nodes, "group") if "plotselect" in p} == {
        "/1.1/plotselect_unknown1D", "/1.1/plotselect_unknown2D", "/1.1/plotselect_samplingcounter"}


@pytest.mark.parametrize("diode_rows,groups,default", [
    (5, {"/1.1/plotselect"}, None),
    (4, {"/1.1/plotselect_samplingcounter", "/1.1/plotselect_unknown0D"}, "/1.1/plotselect_unknown0D"),
])
def test_channels_of_different_lengths_get_nxdata_of_their_own(diode_rows, groups, default):
    """plotselect(sdiode, sim_gauss); an ascan aborted while sdiode had one point less: blisswriter groups
    the signals by their dataset's shape (writer/plots.py:238-263), so (4,) and (5,) are two NXdata, named
    by device type, `plotselect` linking the one whose signal names sort last (('sdiode',) < ('sim_gauss',))."""
    items = [plotted("axis:robx", "positioner", (), 5, master=0), plotted("ctrl:sdiode", "samplingcounter", (), diode_rows),
             plotted("sim:sim_gauss", "", (), 5)]
    nodes = plot_nodes("1.1", items, ["sdiode", "sim_gauss"], (), False, {}, [])
    assert set(by_op(nodes, "group")) == groups
    link = by_op(nodes, "softlink").get("/1.1/plotselect")
    assert (link.target if link else None) == default
    for group in by_op(nodes, "group").values():
        assert group.attrs["axes"] == ["robx"]
