"""amesh, dmesh, a3mesh in BLISS: flat datasets with BLISS's values (default, no keepshape) and the
plot of the grid that spec §4.10 prescribes (a reshaped view with one axis per grid dimension)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.bliss.expect import assert_channels, assert_entry, assert_positioners, text

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
