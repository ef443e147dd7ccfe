"""The scans of the BLISS tier, run by driver.py inside the BLISS session `nxbliss`.

Each function runs its scans with BLISS's own scan commands and returns the scan objects (the
driver reports them). Counting times are short (10 ms): the tier tests the writer, not counters.
Plots: `plotselect` (kept for all later scans) and `plotinit` (next scan only) as a user types them.
"""
from __future__ import annotations

import itertools

import gevent
import numpy
from bliss.common import scans as S
from bliss.common.plot import plotinit, plotselect
from bliss.scanning.chain import ChainIterationPreset, ChainPreset

DT = 0.01
g = None  # the session's objects (set by driver.py)


def diodes():
    """The simulation diodes in every sampling mode, plus the integrating one."""
    return [g.diode_mean, g.diode_stats, g.diode_samples, g.diode_single, g.diode_last,
            g.diode_integrate, g.idiode]


def scalars():
    return diodes() + [g.sim_gauss, g.sim_linear, g.calc_double]


def _plot_two():
    plotselect(g.diode_mean, g.sim_gauss)


def ct():
    """ct does not save: the writer must not write it."""
    return [S.ct(DT, g.diode_mean, g.sim_gauss)]


def sct():
    plotselect()  # nothing selected: no plot
    return [S.sct(DT, *scalars())]


def loopscan():
    _plot_two()
    return [S.loopscan(5, DT, *scalars())]


def timescan_bounded():
    _plot_two()
    return [S.timescan(DT, g.diode_mean, g.sim_gauss, npoints=6)]


def _published(scan, channel: str) -> int:
    try:
        return len(scan.streams[channel])
    except Exception:  # the stream does not exist yet
        return 0


def _abort_after(scan, channel: str, npoints: int, timeout: float = 60):
    """Run `scan` and abort it as Ctrl-C does once `channel` has `npoints` points."""
    task = gevent.spawn(scan.run)
    with gevent.Timeout(timeout):
        while _published(scan, channel) < npoints and not task.ready():
            gevent.sleep(0.01)
    task.kill(KeyboardInterrupt)
    task.join()
    return scan


def timescan_aborted():
    _plot_two()
    scan = S.timescan(0.05, g.diode_mean, g.sim_gauss, run=False)
    return [_abort_after(scan, "timer:elapsed_time", 4)]


def ascan():
    _plot_two()
    return [S.ascan(g.robx, 0, 1, 5, DT, *scalars())]


def dscan():
    _plot_two()
    g.robx.move(2)
    return [S.dscan(g.robx, -0.5, 0.5, 4, DT, g.diode_mean, g.sim_gauss)]


def a2scan():
    _plot_two()
    return [S.a2scan(g.robx, 0, 1, g.roby, 0, 2, 5, DT, g.diode_mean, g.sim_gauss)]


def amesh():
    plotselect(g.diode_mean)
    return [S.amesh(g.robx, 0, 1, 3, g.roby, 0, 1, 2, DT, g.diode_mean, g.sim_gauss)]


def amesh_detectors():
    """plotinit(frame, spectrum, diode): a mesh plotting a 2D, a 1D and a sampling counter."""
    plotinit(g.fakedet.counters.frame, g.fakedet.counters.spectrum, g.diode_mean)
    return [S.amesh(g.robx, 0, 1, 3, g.roby, 0, 1, 2, DT, g.fakedet, g.diode_mean)]


def dmesh():
    plotselect(g.diode_mean)
    g.robx.move(1)
    g.roby.move(1)
    return [S.dmesh(g.robx, -0.5, 0.5, 2, g.roby, -1, 1, 3, DT, g.diode_mean)]


def a3mesh():
    plotselect(g.diode_mean)
    return [S.a3mesh(g.robx, 0, 1, 2, g.roby, 0, 1, 1, g.robz, 0, 2, 2, DT, g.diode_mean)]


def lookupscan():
    """(BLISS's simulation counters cannot count in lookupscan/pointscan: no start/stop)"""
    plotselect(g.diode_mean, g.calc_double)
    return [S.lookupscan([(g.robx, [0, 0.5, 2]), (g.roby, [1, 2, 3])], DT, g.diode_mean, g.calc_double)]


def pointscan():
    plotselect(g.diode_mean, g.calc_double)
    return [S.pointscan(g.robx, [0, 0.3, 1, 1.5], DT, g.diode_mean, g.calc_double)]


def mca():
    """SimulatedMCA (4 detectors, statistics) with one ROI."""
    g.simu_mca.rois.set("roi_a", 100, 300)
    plotinit(g.simu_mca.counters.spectrum_det0)
    return [S.loopscan(3, DT, g.simu_mca, g.diode_mean)]


def fake_detectors():
    plotinit(g.fakedet.counters.spectrum, g.fakedet.counters.frame)
    return [S.loopscan(4, DT, g.fakedet)]


def fake_chunk_options():
    """Frames with BLISS's chunk options set by the user (SCAN_SAVING.writer_object), reset after
    to BLISS's defaults (its setters refuse None). A writer that refuses the options FAULTs the scan,
    which BLISS raises: the scan is returned all the same."""
    writer = g.SCAN_SAVING.writer_object
    writer.chunk_size = 16384 / 1024**2  # MB → chunk_nbytes 16384
    writer.chunk_split = 2
    writer.compression_limit = 0  # compress whatever the size
    writer.compression_scheme = "gzip"
    scan = S.loopscan(6, DT, g.fakedet.counters.frame, run=False)
    try:
        scan.run()
    except RuntimeError as e:
        if "Nexus writer is in FAULT state" not in str(e):
            raise
    finally:
        writer.chunk_size, writer.chunk_split, writer.compression_limit = 1, 4, 1
        writer.compression_scheme = None
    return [scan]


def sequence():
    """bliss.scanning.group.Sequence: a sequence scan and two child scans."""
    from bliss.scanning.group import Sequence

    _plot_two()
    seq = Sequence(title="nxbliss_sequence")
    with seq.sequence_context() as ctx:
        s1 = S.loopscan(3, DT, g.diode_mean, run=False)
        ctx.add_and_run(s1)
        s2 = S.ascan(g.robx, 0, 1, 2, DT, g.diode_mean, g.sim_gauss, run=False)
        ctx.add_and_run(s2)
    return [seq.scan, s1, s2]


def scan_sequence():
    """bliss.scanning.scan_sequence.ScanSequence with a custom channel and one child scan."""
    from bliss.scanning.channel import AcquisitionChannel
    from bliss.scanning.scan_sequence import ScanSequence

    children = []

    def runner(ctx):
        ctx.emit("custom", [1.5])
        s = S.loopscan(2, DT, g.sim_gauss, run=False)
        children.append(s)
        ctx.add_and_run(s)
        ctx.emit("custom", [2.5, 3.5])

    seq = ScanSequence(runner=runner, title="nxbliss_scan_sequence",
                       channels=[AcquisitionChannel("custom", numpy.float64, ())])
    seq.run()
    return [seq] + children


class _FailAt(ChainPreset):
    """Makes the n-th iteration of the chain raise, as a broken controller would."""

    class _Iteration(ChainIterationPreset):
        def __init__(self, i: int, n: int) -> None:
            self.i, self.n = i, n

        def start(self):
            if self.i == self.n:
                raise RuntimeError("nxbliss: simulated controller failure")

    def __init__(self, n: int) -> None:
        self.n = n

    def get_iterator(self, chain):
        for i in itertools.count():
            yield self._Iteration(i, self.n)


def failing():
    _plot_two()
    scan = S.loopscan(10, DT, g.diode_mean, g.sim_gauss, run=False)
    scan.acq_chain.add_preset(_FailAt(3))
    try:
        scan.run()
    except RuntimeError as e:
        if "simulated controller failure" not in str(e):
            raise
    else:
        raise AssertionError("the failing scan did not fail")
    return [scan]


def aborted():
    _plot_two()
    scan = S.ascan(g.robx, 0, 5, 100, 0.05, g.diode_mean, g.sim_gauss, run=False)
    return [_abort_after(scan, "axis:robx", 5)]


def two_at_once():
    """Two scans running at the same time in one session (different counters): the second starts
    once the first (1 s long) has published its first point."""
    plotselect(g.diode_mean)
    s1 = S.loopscan(20, 0.05, g.diode_mean, run=False)
    s2 = S.timescan(0.02, g.sim_gauss, npoints=5, run=False)
    t1 = gevent.spawn(s1.run)
    with gevent.Timeout(30):
        while _published(s1, "timer:elapsed_time") < 1:
            gevent.sleep(0.01)
    t2 = gevent.spawn(s2.run)
    gevent.joinall([t1, t2], raise_error=True)
    return [s1, s2]


def _with_writer(writer: str, run):
    """Run scans with SCAN_SAVING.writer = `writer` into a file of their own (the scan numbers go on:
    no data policy), then back to the tier's "nexus" and its dataset file."""
    from bliss import current_session

    saving = current_session.scan_saving
    previous = saving.writer, saving.data_filename
    saving.writer, saving.data_filename = writer, f"data_{writer}"
    try:
        return run()
    finally:
        saving.writer, saving.data_filename = previous


def mapping_scans():
    """BLISS's "mapping" route: BLISS publishes the h5map and asks the BlissWriter device (issue 16)."""
    _plot_two()
    return _with_writer("mapping", lambda: [S.ascan(g.robx, 0, 1, 7, DT, g.diode_mean, g.sim_gauss),
                                            S.loopscan(4, DT, g.diode_mean, g.sim_gauss)])
