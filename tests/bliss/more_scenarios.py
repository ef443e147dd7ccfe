"""More scans for the reference comparison (tests/bliss/reference_run.py), run by driver.py inside
the BLISS session `nxbliss` as scenarios.py's are: scan types scenarios.py does not type, the mesh of
issue 22 (`plotinit` of a 2D, a 1D and a sampling counter), every counter kind in one scan, aborts
between two points (the same points in every run), a 20 000-point mixed scan published at ~7 kHz, and
the set-up that gives both writers' runs the same starting point.
"""
from __future__ import annotations

import itertools
import os
import time

import gevent
import numpy
from bliss.common import scans as S
from bliss.common.plot import plotinit, plotselect
from bliss.scanning.chain import AcquisitionChain, AcquisitionMaster, ChainIterationPreset, ChainPreset
from bliss.scanning.channel import AcquisitionChannel
from bliss.scanning.scan import Scan, ScanAbort

DT = 0.01
g = None  # the session's objects (set by driver.py)
_saved: dict = {}


# -- one run of the comparison: same motors, plots, numbers and a directory of its own ---------------
def comparison_setup(tag: str, first_number: int):
    """Scans go to NXBLISS_DATA/<tag>/nxbliss/data.h5 numbered from `first_number`; motors at 0,
    no plot selected. The tier's own settings are kept for comparison_teardown."""
    from bliss import current_session

    saving = current_session.scan_saving
    if not _saved:
        _saved.update(base_path=saving.base_path, next=saving.next_scan_number())
    saving.base_path = os.path.join(os.environ["NXBLISS_DATA"], tag)
    saving.reset_scan_number(next=first_number)
    for motor in (g.robx, g.roby, g.robz):
        motor.move(0)
    plotselect()
    return []


def comparison_teardown():
    """Back to the tier's directory and scan numbers (the tier's files go on without a clash)."""
    from bliss import current_session

    if _saved:
        saving = current_session.scan_saving
        saving.base_path = _saved["base_path"]
        saving.reset_scan_number(next=_saved["next"])
        _saved.clear()
    return []


# -- scan types scenarios.py does not type -------------------------------------------------------
def a3scan():
    plotselect(g.diode_mean)
    return [S.a3scan(g.robx, 0, 1, g.roby, 0, 2, g.robz, 0, 3, 4, DT, g.diode_mean, g.sim_gauss)]


def d2scan():
    plotselect(g.sim_gauss)
    return [S.d2scan(g.robx, -0.5, 0.5, g.roby, -1, 1, 3, DT, g.diode_mean, g.sim_gauss)]


def anscan():
    plotselect(g.diode_mean)
    return [S.anscan([(g.robx, 0, 1), (g.roby, 0, 2), (g.robz, 1, 3)], 3, DT, g.diode_mean, g.sim_linear)]


def dnscan():
    plotselect(g.diode_mean)
    return [S.dnscan([(g.robx, -1, 1), (g.roby, -0.5, 0.5)], 4, DT, g.diode_mean)]


def lineup():
    """dscan to the peak of sim_gauss, then the motor goes there."""
    return [S.lineup(g.robx, -2, 2, 8, DT, g.sim_gauss)]


def d3mesh():
    plotselect(g.diode_mean)
    return [S.d3mesh(g.robx, -0.5, 0.5, 1, g.roby, 0, 1, 1, g.robz, -1, 1, 2, DT, g.diode_mean)]


def anmesh():
    plotselect(g.sim_gauss)
    return [S.anmesh([(g.robx, 0, 1, 2), (g.roby, 0, 1, 1)], DT, g.diode_mean, g.sim_gauss)]


def amesh_plotinit():
    """Issue 22's last difference: `plotinit(2D, 1D, sampling counter)` before a mesh."""
    plotinit(g.fakedet.counters.frame, g.fakedet.counters.spectrum, g.diode_mean)
    return [S.amesh(g.robx, 0, 1, 2, g.roby, 0, 1, 1, DT, g.fakedet, g.diode_mean)]


class _AbortAt(ChainPreset):
    """Aborts the scan as Ctrl-C does (ScanAbort: end_reason USER_ABORT), but between two points (at the
    start of the n-th iteration), so that every channel has n points in both writers' runs: an abort
    in the middle of a point (scenarios.aborted) leaves BLISS's channels at lengths that vary from run
    to run, and the reference's plots follow those lengths."""

    class _Iteration(ChainIterationPreset):
        def __init__(self, i: int, n: int) -> None:
            self.i, self.n = i, n

        def start(self):
            if self.i == self.n:
                raise ScanAbort("nxbliss: aborted between two points")

    def __init__(self, n: int) -> None:
        self.n = n

    def get_iterator(self, chain):
        for i in itertools.count():
            yield self._Iteration(i, self.n)


def _run_aborted_at(scan, n: int):
    scan.acq_chain.add_preset(_AbortAt(n))
    try:
        scan.run()
    except ScanAbort:
        pass
    return [scan]


def ascan_aborted_between_points():
    plotselect(g.diode_mean, g.sim_gauss)
    return _run_aborted_at(S.ascan(g.robx, 0, 5, 100, DT, g.diode_mean, g.sim_gauss, run=False), 5)


def timescan_aborted_between_points():
    plotselect(g.diode_mean, g.sim_gauss)
    return _run_aborted_at(S.timescan(DT, g.diode_mean, g.sim_gauss, run=False), 4)


def mixed_counters():
    """Every kind of channel in one step scan: diodes, MCA, 1D and 2D fake detectors, a calc counter."""
    g.simu_mca.rois.set("roi_a", 100, 300)
    plotselect(g.diode_mean)
    return [S.ascan(g.robx, 0, 1, 3, DT, g.diode_stats, g.diode_samples, g.simu_mca, g.fakedet, g.calc_double)]


# -- the kHz scan -----------------------------------------------------------------------------------
class FastMaster(AcquisitionMaster):
    """A top master that publishes `npoints` points in blocks at `rate` points/s, as a fast hardware
    master (MUSST, PEPU) does: a float64 position, an int32 count, a uint16 flag and a float32
    spectrum of 8 per point. Deterministic values (the point index)."""

    def __init__(self, npoints: int, rate: float, block: int = 100) -> None:
        super().__init__(name="fast", npoints=npoints, prepare_once=True, start_once=True)
        self.rate, self.block = rate, block
        for name, dtype, shape, unit in (("position", numpy.float64, (), "mm"), ("count", numpy.int32, (), None),
                                         ("flag", numpy.uint16, (), None), ("spectrum", numpy.float32, (8,), None)):
            self.channels.append(AcquisitionChannel(f"fast:{name}", dtype, shape, unit=unit))

    def prepare(self):
        pass

    def start(self):
        t0 = time.time()
        for first in range(0, self.npoints, self.block):
            index = numpy.arange(first, min(first + self.block, self.npoints))
            self.channels.update({"position": index * 1e-3, "count": index.astype(numpy.int32),
                                  "flag": (index % 7).astype(numpy.uint16),
                                  "spectrum": numpy.outer(index, numpy.arange(8)).astype(numpy.float32)})
            gevent.sleep(max(0.0, t0 + (first + len(index)) / self.rate - time.time()))

    def trigger(self):
        pass

    def stop(self):
        pass


def khz_mixed(npoints: int = 20000, rate: float = 7000.0):
    """20 000 points of four mixed channels published at ~7 kHz (BLISS's step scans reach ~50 Hz here)."""
    plotselect()
    chain = AcquisitionChain()
    chain.add(FastMaster(npoints, rate))
    scan = Scan(chain, name="khz_mixed", scan_info={"npoints": npoints, "count_time": 1 / rate, "type": "khz_mixed",
                                                  "title": f"khz_mixed {npoints} {rate:g}"})
    scan.run()
    return [scan]
