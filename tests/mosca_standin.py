"""A stand-in for the Mosca Tango server, as far as a reader of spectra sees it (not shipped).

mosca-client 2.0.5's reader (`mosca_client/tango/readers.py`: `Reader`, the one blissdata-mosca's
`MixedReader` uses when Mosca does not save) asks a Mosca device for: the `metadata` command (YAML:
`mosca.enabled_detectors`, `data.spectrum_size`, `data.stats_names`, `data.saving.enabled`), the
`read_spectra([first, last])` command (all enabled detectors, flat, read as (detectors, points,
spectrum size), `last` exclusive) and the `n_available_points`/`n_read_points`/`n_saved_points`/
`n_triggered_points` attributes. This device answers exactly those, for the spectra of
`spectra()` (a formula the tests compute too); the `acquire(n)` command stands for the hardware:
points 0..n-1 have been read. A real Tango device server process on the test's Tango database:

    python tests/mosca_standin.py INSTANCE      (device properties: spectrum_size, enabled_detectors)
"""
from __future__ import annotations

import json

import numpy as np
from tango import DevState
from tango.server import Device, attribute, command, device_property, run


def spectra(detectors: list[int], size: int, first: int, last: int) -> np.ndarray:
    """(detectors, last - first, size) uint32: what the stand-in's hardware measured."""
    det = np.asarray(detectors, dtype=np.uint64)[:, None, None]
    point = np.arange(first, last, dtype=np.uint64)[None, :, None]
    channel = np.arange(size, dtype=np.uint64)[None, None, :]
    return ((point * 7919 + det * 104729 + channel * 31) % 65521).astype(np.uint32)


class MoscaStandIn(Device):
    spectrum_size = device_property(dtype=int, default_value=64)
    enabled_detectors = device_property(dtype=(int,), default_value=[0])

    def init_device(self) -> None:
        super().init_device()
        self.points = 0
        self.set_state(DevState.ON)

    @attribute(dtype=int)
    def n_available_points(self) -> int:
        return self.points

    @attribute(dtype=int)
    def n_read_points(self) -> int:
        return self.points

    @attribute(dtype=int)
    def n_triggered_points(self) -> int:
        return self.points

    @attribute(dtype=int)
    def n_saved_points(self) -> int:
        return 0

    @command(dtype_out=str)
    def metadata(self) -> str:
        return json.dumps({"mosca": {"enabled_detectors": list(self.enabled_detectors)},
                           "data": {"spectrum_size": self.spectrum_size, "stats_names": ["icr", "ocr"],
                                    "saving": {"enabled": False}, "rois": {"n_rois": 0}}})

    @command(dtype_in=(int,), dtype_out=(np.uint32,))
    def read_spectra(self, args) -> np.ndarray:
        first = int(args[0])
        last = int(args[1]) if len(args) > 1 else self.points
        if not 0 <= first <= last <= self.points:
            raise ValueError(f"points {first}..{last} not available (0..{self.points})")
        return spectra(list(self.enabled_detectors), self.spectrum_size, first, last).ravel()

    @command(dtype_in=int)
    def acquire(self, n: int) -> None:
        self.points = max(self.points, int(n))


if __name__ == "__main__":
    run((MoscaStandIn,))
