"""amesh, dmesh, a3mesh in BLISS: flat datasets with BLISS's values (default, no keepshape) and the
plot of the grid that spec §4.10 prescribes (a reshaped view with one axis per grid dimension); a mesh
of detectors that publish more points than the grid: left out of the plot, as blisswriter does."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.bliss.expect import assert_channels, assert_entry, assert_plot, assert_positioners, text

pytestmark = pytest.mark.bliss

# scenario → grid shape (slow first), motors slow first
MESHES = {"amesh": ((3, 4), ["roby", "robx"]), "dmesh": ((4, 3), ["roby", "robx"]),
          "a3mesh": ((3, 2, 3), ["robz", "roby", "robx"])}


@pytest.mark.parametrize("scenario", list(MESHES))
def test_mesh_data(ran, scenario):
    (scan,) = ran(scenario)
    shape, motors = MESHES[scenario]
    assert scan.info["data_dim"] == len(shape)
    with scan.open() as f:
        e = assert_entry(f, scan)
        assert_positioners(e, scan)
        assert_channels(e, scan)
        assert e["instrument/diode_mean/signal"].shape == (int(np.prod(shape)),)  # flat
        # C order: the fast motor (robx) moves every point, the slow one once per row
        robx = e["instrument/robx/value"][()].reshape(shape)
        assert np.ptp(robx, axis=-1).min() > 0 and np.allclose(np.ptp(robx, axis=0), 0, atol=1e-3)
        assert text(e.attrs["default"]) == "plotselect" and text(e["plotselect"].attrs["signal"]) == "diode_mean"


@pytest.mark.parametrize("scenario", list(MESHES))
def test_mesh_plot_is_the_grid(ran, scenario):
    (scan,) = ran(scenario)
    shape, motors = MESHES[scenario]
    with scan.open() as f:
        plot = f[f"{scan.entry}/plotselect"]
        assert [text(a) for a in plot.attrs["axes"]] == motors
        signal = plot["diode_mean"]
        assert signal.shape == shape
        assert text(signal.attrs["interpretation"]) == ("vertex" if len(shape) == 3 else "image")
        np.testing.assert_array_equal(signal[()], scan.data["simulation_diode_sampling_controller:diode_mean"].reshape(shape))
        for dim, motor in enumerate(motors):  # the motor's positions averaged over the other dims
            positions = scan.data[f"axis:{motor}"].reshape(shape)
            mean = positions.mean(axis=tuple(d for d in range(len(shape)) if d != dim))
            np.testing.assert_allclose(plot[motor][()], mean, atol=1e-3)


def test_mesh_plot_leaves_out_detectors_that_do_not_fill_the_grid(ran):
    """plotinit(frame, spectrum, diode_mean); amesh(robx, 0, 1, 3, roby, 0, 1, 2, fakedet, diode_mean).

    BLISS's FakeController publishes one point more than the scan has (13 for the 12 of the grid).
    blisswriter 2.0.0 shows flat data as the grid only when its size is the grid's (writer/plots.py,
    NXdataWriter.add_signal, lines 218-234: `npoints != enpoints` → "Cannot reshape (13, 32, 32) to
    (3, 4, 32, 32) for plot 'plotselect'", the channel is not added); the other selected channels are
    plotted as usual (writer/scan.py:783-794), so one NXdata is left, named `plotselect` without a
    suffix (plots.py:160-176: suffixes only when split) and the entry's default. Its datasets are
    written whole all the same.
    """
    (scan,) = ran("amesh_detectors")
    shape = (3, 4)
    assert len(scan.data["fakedet:frame"]) == len(scan.data["fakedet:spectrum"]) == 13  # the premise
    assert len(scan.data["simulation_diode_sampling_controller:diode_mean"]) == 12
    with scan.open() as f:
        e = assert_entry(f, scan)
        assert_channels(e, scan)  # frame (13, 32, 32), spectrum (13, 64): all BLISS published
        assert {k for k in e if k.startswith("plotselect")} == {"plotselect"}
        assert isinstance(e.get("plotselect", getlink=True), h5py.HardLink)  # a group, not a link to one
        plot = assert_plot(e, ["diode_mean"], ["roby", "robx"])
        assert plot["diode_mean"].shape == shape and text(plot["diode_mean"].attrs["interpretation"]) == "image"
        np.testing.assert_array_equal(plot["diode_mean"][()],
                                      scan.data["simulation_diode_sampling_controller:diode_mean"].reshape(shape))
        assert set(plot) == {"diode_mean", "roby", "robx"}
