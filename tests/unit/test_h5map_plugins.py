"""Lima2 and Mosca streams mapped in an h5map (the "mapping" route): `PluginStreams` places them at the
path BLISS mapped, as the "nexus" route does at blisswriter's place (driver/plugin_streams.py with
an `H5MapPlan`; no Redis, the steps are recorded)."""
from __future__ import annotations

from types import SimpleNamespace

from blissdata import h5map as h5m

from launch.simulate import ScanSpec, scan_info
from nxpar.driver.plugin_streams import PluginStreams
from nxpar.driver.row_writes import StreamProgress
from nxpar.driver.scan_source import StreamDescription
from nxpar.nexus.file_plan import PluginPlan
from nxpar.nexus.h5map_plan import H5MapPlan
from nxpar.nexus.plan import ScanPlan
from nxpar.nexus.plugin_plan import PluginMode
from nxpar.protocol.options import SaveOptions
from nxpar.protocol.steps import NodeOp
from tests.unit.test_h5map_plan import entry, mapped_info

MASTER = ["/d/scan0001/eiger_frame_master.h5", "entry_0000/ESRF-id00/eiger/data"]
MOSCA = {"file_path": "/d/scan0001", "file_prefix": "fx_", "data_path": "/entry_0000/fx/data", "file_format": "hdf5",
         "points_per_file": 4, "saving_enabled": True}


class Steps:
    """The writer channel as PluginStreams uses it: steps recorded."""

    def __init__(self) -> None:
        self.steps: list = []

    def call(self, step) -> None:
        self.steps.append(step)


def mapped_plan(options: SaveOptions | None = None) -> H5MapPlan:
    det = h5m.Group(attributes={"NX_class": "NXdetector"}, children={
        "frame": h5m.Dataset(value=h5m.Stream(stream="eiger:frame"), attributes={"units": "counts"}),
        "unsaved": h5m.Dataset(value=h5m.Stream(stream="eiger:unsaved"))})
    fx = h5m.Group(attributes={"NX_class": "NXdetector"}, children={
        "spectrum": h5m.Dataset(value=h5m.Stream(stream="fx:spectrum:spec_det02"))})
    return H5MapPlan(mapped_info("/d/x.h5", entry({"instrument": h5m.Group(children={"eiger": det, "fx_det2": fx})})),
                     options or SaveOptions())


def lima2(name: str, master=MASTER) -> StreamDescription:
    return StreamDescription(name, "array", "lima2", info={"dtype": "uint16", "shape": [16, 12], "master_file": master})


def mosca() -> StreamDescription:
    return StreamDescription("fx:spectrum:spec_det02", "array", "mosca",
                             info={"dtype": "uint32", "shape": [64], "detector": 2, "mosca_info": MOSCA})


def plugin_streams() -> tuple[PluginStreams, Steps, list[str]]:
    warnings: list[str] = []
    steps = Steps()
    return PluginStreams(SimpleNamespace(info={"name": "1_loopscan"}, key="k"), steps, warnings.append), steps, warnings


def test_both_plans_answer_what_plugin_streams_asks():
    assert isinstance(mapped_plan(), PluginPlan)
    assert isinstance(ScanPlan(scan_info(ScanSpec("s", "/d/x.h5", 1, 5)), SaveOptions()), PluginPlan)


def test_a_mapped_lima2_stream_is_the_vds_over_its_master_file_at_the_mapped_path():
    plan = mapped_plan()
    plugins, steps, warnings = plugin_streams()
    assert plugins.classify(lima2("eiger:frame"), plan) == PluginMode.LIMA2_LINK.value
    streams = {"eiger:frame": StreamProgress("eiger:frame", PluginMode.LIMA2_LINK.value, available=3)}
    assert plugins.link(plan, streams) and not warnings
    [node] = steps.steps[0].nodes
    assert node.op == NodeOp.VDS and node.path == "/1.1/instrument/eiger/frame"
    assert node.value["shape"] == (3, 16, 12)
    assert node.value["sources"] == [("scan0001/eiger_frame_master.h5", "/" + MASTER[1], (3, 16, 12), 0, 0, 3)]
    assert node.attrs == {"interpretation": "image", "units": "counts"}  # the map's attributes kept


def test_a_mapped_lima2_stream_copied_on_request():
    plan = mapped_plan(SaveOptions(allow_external_hdf5=False, copy_non_external=True))
    plugins, _, _ = plugin_streams()
    assert plugins.classify(lima2("eiger:frame"), plan) == PluginMode.LIMA2_COPY.value
    spec = plugins.spec(plan, "eiger:frame")
    assert spec.path == "/1.1/instrument/eiger/frame" and spec.detector_shape == (16, 12)
    assert spec.attrs == {"units": "counts"}


def test_a_mapped_lima2_stream_without_master_file_is_a_warning_and_nothing_there():
    plan = mapped_plan()
    plugins, steps, warnings = plugin_streams()
    assert plugins.classify(lima2("eiger:unsaved", master=None), plan) == PluginMode.GROUP_ONLY.value
    assert warnings == ["eiger:unsaved: not saved by Lima2 (no master file): nothing written at "
                        "/1.1/instrument/eiger/unsaved"]
    plugins.link(plan, {"eiger:unsaved": StreamProgress("eiger:unsaved", PluginMode.GROUP_ONLY.value, available=2)})
    assert steps.steps == []


def test_a_mapped_mosca_stream_is_copied_or_a_vds():
    plan = mapped_plan()
    plugins, _, _ = plugin_streams()
    assert plugins.classify(mosca(), plan) == PluginMode.MOSCA_COPY.value
    spec = plugins.spec(plan, "fx:spectrum:spec_det02")
    assert spec.path == "/1.1/instrument/fx_det2/spectrum" and spec.chunks == (5, 64)  # whole spectra per chunk
    plan = mapped_plan(SaveOptions(mosca_vds=True))
    plugins, steps, _ = plugin_streams()
    assert plugins.classify(mosca(), plan) == PluginMode.MOSCA_VDS.value
    plugins.link(plan, {"fx:spectrum:spec_det02": StreamProgress("fx:spectrum:spec_det02", "mosca_vds", available=5)})
    [node] = steps.steps[0].nodes
    assert node.path == "/1.1/instrument/fx_det2/spectrum" and node.value["shape"] == (5, 64)
    assert [s[0] for s in node.value["sources"]] == ["scan0001/fx_spectra_0000.h5", "scan0001/fx_spectra_0001.h5"]
