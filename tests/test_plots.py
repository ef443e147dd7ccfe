"""Plots, links and frame chunks as blisswriter 2.0.0 writes them (issue 12), on the real stack:
Redis + blissdata publisher, mpirun'd writer service, files read back with h5py."""
from __future__ import annotations

import itertools
import warnings

import h5py
import numpy as np
import pytest

from launch.simulate import ScanSpec
from tests.helpers import assert_file_matches, run_scan, start_scan, wait_scan_done

MOTORS = ["axis:robx", "axis:roby", "axis:robz"]


def expected_axis(pub, motor: str, grid_shape: tuple[int, ...]) -> np.ndarray:
    """blisswriter's grid axis: the motor's published positions (NaN where none) averaged over the
    other grid dimensions, then a linear fit through the finite averages."""
    npoints = int(np.prod(grid_shape))
    positions = np.full(npoints, np.nan)
    n = min(pub.sent, npoints)
    positions[:n] = pub.expected(motor, n)
    dim = len(grid_shape) - 1 - MOTORS.index(motor)  # C order: the fast motor is the last dimension
    others = tuple(d for d in range(len(grid_shape)) if d != dim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without any point
        averaged = np.nanmean(positions.reshape(grid_shape), axis=others)
    x = np.arange(averaged.size)
    mask = np.isfinite(averaged)
    if mask.sum() < 2:  # blisswriter: when the fit fails, evenly spaced between the extremes
        return np.linspace(np.nanmin(averaged), np.nanmax(averaged), averaged.size)
    m, b = np.polyfit(x[mask], averaged[mask], 1)
    return m * x + b


# Every scan of this module has its own number: the device knows scans by name ("<nb>_ascan"), and a
# finished scan of the same name from the test before would answer for the new one.
SCAN_NB = itertools.count(201)


def mesh_spec(name: str, data_dir, grid, npoints, **kw) -> ScanSpec:
    return ScanSpec("n3", str(data_dir / f"{name}.h5"), next(SCAN_NB), npoints, image_shape=None, mca_channels=None, grid=grid,
                    extra_info={"display_extra": {"plotselect": ["diode_ctrl:diode"], "plotselect_time": 1.7e9}}, **kw)


@pytest.mark.parametrize("case,grid,points,backnforth", [
    ("amesh", (4, 3), 12, False), ("aborted", (4, 3), 7, False), ("first_line", (4, 3), 2, False),
    ("overrun", (4, 3), 15, False),
    ("backnforth", (4, 3), 12, True), ("a3mesh", (2, 3, 2), 12, False)])
def test_flat_mesh_is_plotted_as_the_grid(services, stack, data_dir, case, grid, points, backnforth):
    """plotselect(diode); amesh(...): datasets stay flat, plotselect/diode is the grid (C order, a virtual
    dataset over the flat data) with interpretation image (3D: vertex) and one averaged linear axis per
    dimension, slow first. An aborted mesh reads NaN where no point came; an overrun grows the slow axis."""
    proxy = services.get(3)["n3"]
    spec = mesh_spec(case, data_dir, grid, points, backnforth=backnforth)
    pub = start_scan(proxy, stack.env["REDIS_DATA_URL"], spec, points, batch=2)
    pub.stop_close("SUCCESS" if points >= 12 else "USER_ABORT")
    assert wait_scan_done(proxy, spec.name) == "OFF", proxy.scan_state_reason(spec.name)
    assert_file_matches(pub, points)
    shape = tuple(reversed(grid))
    shape = (max(shape[0], -(-points // int(np.prod(shape[1:])))),) + shape[1:]
    with h5py.File(spec.filename, "r", locking=False) as f:
        e = f[f"{spec.scan_nb}.1"]
        assert e["instrument/diode/signal"].shape == (points,)  # the data itself stays flat
        assert e.attrs["default"] == "plotselect" and f.attrs["default"] == f"{spec.scan_nb}.1"
        plot = e["plotselect"]
        assert plot.attrs["NX_class"] == "NXdata" and plot.attrs["signal"] == "diode"
        motors = MOTORS[:len(grid)][::-1]  # slow first
        assert list(plot.attrs["axes"]) == [m.split(":")[1] for m in motors]
        diode = plot["diode"]
        assert diode.is_virtual and diode.shape == shape
        assert diode.attrs["interpretation"] == ("vertex" if len(grid) == 3 else "image")
        expected = np.full(int(np.prod(shape)), np.nan)
        expected[:points] = pub.expected("diode_ctrl:diode", points)
        np.testing.assert_array_equal(diode[()], expected.reshape(shape))
        for motor in motors:
            np.testing.assert_allclose(plot[motor.split(":")[1]][()], expected_axis(pub, motor, shape), atol=1e-9)
        if case == "overrun":  # 15 points: a 4th line of roby
            np.testing.assert_allclose(plot["roby"][()], [0, 0.5, 1, 1.5], atol=1e-9)
        if case == "aborted":  # 7 points: the 3rd line never came, its roby extrapolated
            np.testing.assert_allclose(plot["roby"][()], [0, 0.5, 1], atol=1e-9)
            assert np.isnan(diode[2]).all() and np.isnan(diode[1, 3]) and not np.isnan(diode[1, 2])
        if case == "first_line":  # 2 points: one line begun; roby known only there
            np.testing.assert_allclose(plot["roby"][()], [0, 0, 0], atol=1e-9)
            assert np.isnan(diode[1:]).all() and np.isnan(diode[0, 2:]).all()
        if backnforth:  # rows 0 and 2 forward, row 1 backward: robx averages to (1 + x) / 3
            np.testing.assert_allclose(plot["robx"][()], (1 + np.arange(4) / 3) / 3, atol=1e-9)


def test_mesh_plot_of_spectra_and_frames(services, stack, data_dir):
    """A mesh plotting an MCA spectrum and a frame: one NXdata per detector shape, each signal the grid
    plus detector dims (spectrum / image), with datadim axes."""
    proxy = services.get(3)["n3"]
    spec = ScanSpec("n3", str(data_dir / "mesh_det.h5"), next(SCAN_NB), 6, image_shape=(6, 5), mca_channels=16, grid=(3, 2),
                    extra_info={"display_extra": {"displayed_channels": ["simu1:spectrum_det0", "cam:image"]}})
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, batch=2)
    with h5py.File(spec.filename, "r", locking=False) as f:
        e = f[f"{spec.scan_nb}.1"]
        assert {k for k in e if k.startswith("plotselect")} == {"plotselect", "plotselect_mca", "plotselect_unknown2D"}
        # the last: ('image',) < ('simu1_det0',)
        assert e.get("plotselect", getlink=True).path == f"/{spec.scan_nb}.1/plotselect_mca"
        mca, image = e["plotselect_mca"], e["plotselect_unknown2D"]
        assert list(mca.attrs["axes"]) == ["roby", "robx", "datadim0"]
        assert list(image.attrs["axes"]) == ["roby", "robx", "datadim0", "datadim1"]
        assert mca["simu1_det0"].attrs["interpretation"] == "spectrum"
        assert image["image"].attrs["interpretation"] == "image"
        np.testing.assert_array_equal(mca["simu1_det0"][()], pub.expected("simu1:spectrum_det0", 6).reshape(2, 3, 16))
        np.testing.assert_array_equal(image["image"][()], pub.expected("cam:image", 6).reshape(2, 3, 6, 5))
        np.testing.assert_array_equal(mca["datadim0"][()], np.arange(16))
        np.testing.assert_array_equal(image["datadim1"][()], np.arange(5))


def test_plotinit_signals_split_by_detector_shape(services, stack, data_dir):
    """plotinit(spectrum_det0, roi_a_det1, sdiode); ascan(..., simu_mca, sdiode): plotselect_mca1 holds the
    0D signals (roi + diode as auxiliary), plotselect_mca2 the spectrum with a datadim0 axis, and
    plotselect links to the last one (blisswriter's default)."""
    proxy = services.get(2)["n2"]
    wanted = ["simu1:spectrum_det0", "simu1:roi_a_det1", "diode_ctrl:diode"]
    spec = ScanSpec("n2", str(data_dir / "plotinit.h5"), next(SCAN_NB), 5, image_shape=None, mca_channels=32, mca_detectors=2,
                    mca_rois=True, extra_info={"display_extra": {"plotselect": ["diode_ctrl:diode"],
                                                                 "displayed_channels": wanted}})
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, batch=2)
    assert_file_matches(pub, 5, paths={"simu1:spectrum_det1": "instrument/simu1_det1/spectrum",
                                       "simu1:realtime_det1": "instrument/simu1_det1/elapsed_time",
                                       "simu1:roi_a_det0": "instrument/simu1_det0/roi_a",
                                       "simu1:roi_a_det1": "instrument/simu1_det1/roi_a"})
    with h5py.File(spec.filename, "r", locking=False) as f:
        e = f[f"{spec.scan_nb}.1"]
        assert e.attrs["default"] == "plotselect"
        assert e.get("plotselect", getlink=True).path == f"/{spec.scan_nb}.1/plotselect_mca2"
        scalars, spectra = e["plotselect_mca1"], e["plotselect_mca2"]
        assert scalars.attrs["signal"] == "simu1_det1_roi_a" and list(scalars.attrs["auxiliary_signals"]) == ["diode"]
        assert list(scalars.attrs["axes"]) == ["robx"] and "auxiliary_signals" not in spectra.attrs
        assert spectra.attrs["signal"] == "simu1_det0" and list(spectra.attrs["axes"]) == ["robx", "datadim0"]
        assert scalars.get("simu1_det1_roi_a", getlink=True).path == f"/{spec.scan_nb}.1/instrument/simu1_det1/roi_a"
        assert spectra.get("robx", getlink=True).path == f"/{spec.scan_nb}.1/instrument/robx/value"
        np.testing.assert_array_equal(scalars["simu1_det1_roi_a"][()], pub.expected("simu1:roi_a_det1", 5))
        np.testing.assert_array_equal(spectra["simu1_det0"][()], pub.expected("simu1:spectrum_det0", 5))
        np.testing.assert_array_equal(spectra["datadim0"][()], np.arange(32))
        assert e["plotselect"].attrs["signal"] == "simu1_det0"  # through the link


def test_loopscan_of_unnamed_detectors(services, stack, data_dir):
    """plotinit(fake0D, fake1D, fake2D); loopscan(4, 0.02, fake_ctrl): plotselect_unknown0D/1D/2D with the
    timer's elapsed_time as axis, datadim axes for the detector dims."""
    proxy = services.get(2)["n2"]
    spec = ScanSpec("n2", str(data_dir / "loopscan.h5"), next(SCAN_NB), 4, image_shape=None, mca_channels=None, fakes=True,
                    timer_master=True, extra_info={"display_extra": {"displayed_channels": [
                        "fake_ctrl:fake0D", "fake_ctrl:fake1D", "fake_ctrl:fake2D"]}})
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec)
    assert_file_matches(pub, 4, paths={"timer:elapsed_time": "instrument/elapsed_time/value",
                                       "timer:epoch": "instrument/epoch/value"})
    with h5py.File(spec.filename, "r", locking=False) as f:
        e = f[f"{spec.scan_nb}.1"]
        assert e.get("plotselect", getlink=True).path == f"/{spec.scan_nb}.1/plotselect_unknown2D"
        for ndim in range(3):
            plot = e[f"plotselect_unknown{ndim}D"]
            assert plot.attrs["signal"] == f"fake{ndim}D"
            assert list(plot.attrs["axes"]) == ["elapsed_time"] + [f"datadim{i}" for i in range(ndim)]
            assert plot.get("elapsed_time", getlink=True).path == f"/{spec.scan_nb}.1/instrument/elapsed_time/value"
            np.testing.assert_array_equal(plot[f"fake{ndim}D"][()], pub.expected(f"fake_ctrl:fake{ndim}D", 4))
        np.testing.assert_array_equal(e["plotselect_unknown2D/datadim0"][()], np.arange(6))
        np.testing.assert_array_equal(e["plotselect_unknown2D/datadim1"][()], np.arange(5))
        assert e["instrument/fake2D/data"].attrs["interpretation"] == "image"


@pytest.mark.parametrize("shape,npoints,options,chunks,filtered", [
    ((16, 16), 4, {}, (4, 16, 16), False),  # below compression_limit_nbytes: one chunk, no filter
    ((256, 256), 4, {"chunk_nbytes": int(0.25 * 1024 ** 2), "chunk_split": 2}, (2, 128, 128), False),
    ((256, 256), 7, {"chunk_nbytes": 1 << 15, "chunk_split": 2, "compression_limit_nbytes": 0}, (1, 128, 128),
     True),  # tiles of a frame, always compressed
    ((64, 48), 11, {"chunk_nbytes": 3 * 64 * 48 * 2, "chunk_split": 1, "compression_limit_nbytes": 0}, (3, 64, 48),
     True),  # 3 frames per chunk
])
def test_frames_follow_bliss_chunk_options(services, stack, data_dir, shape, npoints, options, chunks, filtered):
    """chunk_nbytes / chunk_split / compression_limit_nbytes as BLISS sends them: tiles of a frame or k
    frames per chunk, written by 3 ranks (2 writers) with one owner rank per chunk; values read back."""
    proxy = services.get(3)["n3"]
    spec = ScanSpec("n3", str(data_dir / "chunks.h5"), next(SCAN_NB), npoints, image_shape=shape, mca_channels=None,
                    chunk_options=options)
    pub = run_scan(proxy, stack.env["REDIS_DATA_URL"], spec, batch=2)
    assert_file_matches(pub, npoints)
    with h5py.File(spec.filename, "r", locking=False) as f:
        image = f[f"{spec.scan_nb}.1/instrument/image/data"]
        assert image.chunks == chunks
        assert ("32008" in image._filters) == filtered and bool(image._filters) == filtered, image._filters


def test_alias_links_are_relative(services, stack, data_dir):
    """instrument/<det>/data is the relative soft link to the dataset next to it (docs/interface.md §4.3)."""
    proxy = services.get(2)["n2"]
    spec = ScanSpec("n2", str(data_dir / "alias.h5"), next(SCAN_NB), 3, image_shape=None, mca_channels=8)
    run_scan(proxy, stack.env["REDIS_DATA_URL"], spec)
    with h5py.File(spec.filename, "r", locking=False) as f:
        e = f[f"{spec.scan_nb}.1"]
        assert e.get("instrument/diode/data", getlink=True).path == "signal"
        assert e.get("instrument/simu1_det0/data", getlink=True).path == "spectrum"
        np.testing.assert_array_equal(e["instrument/simu1_det0/data"][()], e["instrument/simu1_det0/spectrum"][()])
