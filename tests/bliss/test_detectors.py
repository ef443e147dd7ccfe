"""BLISS's SimulatedMCA (4 detectors, statistics) and FakeController 1D/2D detectors: groups and
names of spec §4.5 (mca), datasets equal to what BLISS published, interpretation, plots, chunks."""
from __future__ import annotations

import pytest

from tests.bliss.expect import assert_channels, assert_entry, text

pytestmark = pytest.mark.bliss


def test_mca(ran):
    (scan,) = ran("mca")
    with scan.open() as f:
        e = assert_entry(f, scan)
        assert_channels(e, scan)
        for det in range(4):
            group = e[f"instrument/simu_mca_det{det}"]
            assert text(group.attrs["NX_class"]) == "NXdetector" and text(group["type"][()]) == "mca"
            assert group["spectrum"].shape == scan.data[f"simu_mca:spectrum_det{det}"].shape
            assert text(group["spectrum"].attrs["interpretation"]) == "spectrum"
            assert text(group["trigger_count_rate"].attrs["units"]) == "hertz"
            assert text(group["live_time"].attrs["units"]) == "s"
            assert group["roi_a"].shape == (len(scan.data["timer:elapsed_time"]),)
        plot = e["plotselect"]  # plotinit(spectrum_det0)
        assert text(plot.attrs["signal"]) == "simu_mca_det0"
        assert plot["simu_mca_det0"].id == e["instrument/simu_mca_det0/spectrum"].id


def test_mca_plot_axes(ran):
    (scan,) = ran("mca")
    with scan.open() as f:
        plot = f[f"{scan.entry}/plotselect"]
        assert [text(a) for a in plot.attrs["axes"]] == ["elapsed_time", "datadim0"]
        assert (plot["datadim0"][()] == range(scan.data["simu_mca:spectrum_det0"].shape[1])).all()


def test_fake_1d_2d(ran):
    (scan,) = ran("fake_detectors")
    with scan.open() as f:
        e = assert_entry(f, scan)
        assert_channels(e, scan)
        spectrum, frame = e["instrument/spectrum/data"], e["instrument/frame/data"]
        assert spectrum.ndim == 2 and text(spectrum.attrs["interpretation"]) == "spectrum"
        assert frame.shape[1:] == (32, 32) and text(frame.attrs["interpretation"]) == "image"
        assert frame.dtype == scan.data["fakedet:frame"].dtype


def test_fake_plots_split_by_shape(ran):
    """plotinit(spectrum, frame): plotselect_unknown1D and plotselect_unknown2D with datadim axes;
    plotselect links to the NXdata whose signal names sort last (blisswriter: ('frame',) < ('spectrum',))."""
    (scan,) = ran("fake_detectors")
    with scan.open() as f:
        e = f[scan.entry]
        assert {k for k in e if k.startswith("plotselect")} == {"plotselect", "plotselect_unknown1D", "plotselect_unknown2D"}
        assert e.get("plotselect", getlink=True).path == f"/{scan.entry}/plotselect_unknown1D"
        assert text(e["plotselect_unknown1D"].attrs["signal"]) == "spectrum"
        assert text(e["plotselect_unknown2D"].attrs["signal"]) == "frame"
        assert [text(a) for a in e["plotselect_unknown2D"].attrs["axes"]] == ["elapsed_time", "datadim0", "datadim1"]
        assert e["plotselect_unknown2D/frame"].id == e["instrument/frame/data"].id


def test_frame_chunks_follow_the_spec(ran):
    """Frames of 32×32 int64, npoints frames: below chunk_nbytes (1 MiB) the whole expected shape is
    one chunk and nothing is compressed (below compression_limit_nbytes)."""
    (scan,) = ran("fake_detectors")
    with scan.open() as f:
        frame = f[f"{scan.entry}/instrument/frame/data"]
        assert frame.chunks == (scan.info["npoints"], 32, 32)
        assert not frame._filters


def test_chunk_options_reach_the_writer(ran):
    """SCAN_SAVING.writer_object's options travel in scan_info as spec §2.11 says."""
    (scan,) = ran("fake_chunk_options", expect_states=("OFF", "FAULT"))
    assert scan.info["writer_options"]["chunk_options"] == {
        "chunk_nbytes": 16384, "chunk_split": 2, "compression_limit_nbytes": 0, "compression_scheme": "gzip"}


def test_frame_chunks_follow_bliss_options(ran, bliss_stack):
    """chunk_nbytes 16384 / int64 = 2048 elements over the expected (6, 32, 32), chunk_split 2, from the
    last dim: 16, then 16 (256 elements), then min(ceil(6/2), ceil(2048/256)) = 3; gzip above limit 0."""
    (scan,) = ran("fake_chunk_options", expect_states=("OFF", "FAULT"))
    assert str(bliss_stack.proxy.scan_state(scan.identifier)) == "OFF", bliss_stack.proxy.scan_state_reason(scan.identifier)
    with scan.open() as f:
        assert_channels(assert_entry(f, scan), scan)
        frame = f[f"{scan.entry}/instrument/frame/data"]
        assert frame.chunks == (3, 16, 16)
        assert frame.compression == "gzip" and not frame.shuffle
