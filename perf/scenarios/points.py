"""points: kHz scans of small rows (counters, MCA spectra, tiny images) against the single-process
writer of blisswriter's design, in the same run (the old `perf.point_rate`).

    python -m perf points                                   # every scenario, 1 2 3 ranks, 3 repeats
    python -m perf points --scenario mixed --ranks 2 --repeat 1

Scenarios (BLISS-like scan_info, blissdata streams on real Redis):
  mixed         20 000 points of 4 counters + a 256-channel MCA (+ its realtime) + a 4x4 image, flat out,
                one point per Redis event
  mixed-blocks  the same, 10 points per event (a continuous scan's block size)
  scalars       100 000 points of 4 counters at 10 kHz (100 points per event, paced by the clock)
Measured: points/s from the first publish to the file closed, and the lag = file closed − the
publisher's scan end. Each file is checked (every point there, the diode's values as published).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.baselines import single_process_writer
from ..core.box import Role
from ..core.child import Child
from ..core.publisher import PublisherProcess
from ..core.results import Document
from ..core.scan import wait_closed, wait_registered
from ..core.slices import SliceSet
from ..core.stack import bench_stack

SLICES = True


@dataclass(frozen=True)
class PointScenario:
    name: str
    npoints: int
    batch: int  # points per Redis event
    rate_hz: float | None  # None: flat out
    mca_channels: int | None
    image_shape: tuple[int, int] | None


SCENARIOS = {
    "mixed": PointScenario("mixed", 20_000, 1, None, 256, (4, 4)),
    "mixed-blocks": PointScenario("mixed-blocks", 20_000, 10, None, 256, (4, 4)),
    "scalars": PointScenario("scalars", 100_000, 100, 10_000.0, None, None),
}


def add_arguments(p) -> None:
    p.add_argument("--scenario", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--points", type=int, default=None, help="override the scenarios' point counts")
    p.add_argument("--log", default="WARNING", help="service log level (INFO logs each scan's timeline)")


def _spec(sc: PointScenario, session: str, filename: str, scan_nb: int, npoints: int) -> dict:
    return {"session": session, "filename": filename, "scan_nb": scan_nb, "npoints": npoints,
            "image_shape": sc.image_shape, "mca_channels": sc.mca_channels}


def check_file(publisher: PublisherProcess, filename: str, scan_nb: int, npoints: int) -> str:
    """'' or what is wrong: every measurement dataset has all points, the diode as published."""
    import h5py
    import hdf5plugin  # noqa: F401

    with h5py.File(filename, "r", locking=False) as f:
        measurement = f[f"{scan_nb}.1/measurement"]
        for name, dset in measurement.items():
            if isinstance(dset, h5py.Dataset) and dset.shape[0] != npoints:
                return f"{name} has {dset.shape[0]} points, {npoints} published"
        if not np.array_equal(measurement["diode"][()], publisher.expected("diode_ctrl:diode", npoints)):
            return "diode values differ from the published ones"
    return ""


def _record(doc: Document, sc: PointScenario, writer: str, ranks: int, npoints: int, marks: dict,
            t_closed: float, state: str) -> None:
    r = doc.add("points", scenario=sc.name, writer=writer, ranks=ranks, npoints=npoints,
                publish_rate_hz=npoints / (marks["closed"] - marks["started"]),
                points_per_s=npoints / (t_closed - marks["started"]), lag_s=t_closed - marks["closed"], state=state)
    print(f"  {writer} ranks={ranks}: {state}, published {r['publish_rate_hz']:.0f} Hz, "
          f"{r['points_per_s']:.0f} points/s, lag {r['lag_s']:.2f} s", flush=True)


def run_nxpar(stack, service, publisher: PublisherProcess, sc: PointScenario, npoints: int, scan_nb: int,
              doc: Document) -> None:
    filename = str(stack.rundir / f"n{scan_nb}.h5")
    publisher.create(**_spec(sc, service.instance, filename, scan_nb, npoints))
    wait_registered(service.proxy, f"{scan_nb}_ascan")
    publisher.start_publish(batch=sc.batch, rate_hz=sc.rate_hz)
    t_closed = wait_closed(service.proxy, f"{scan_nb}_ascan", publisher)
    state = str(service.proxy.scan_state(f"{scan_nb}_ascan"))
    if state == "OFF":
        problem = check_file(publisher, filename, scan_nb, npoints)
        state = f"BAD: {problem}" if problem else state
    else:
        state = f"{state}: {service.proxy.scan_state_reason(f'{scan_nb}_ascan')}"
    _record(doc, sc, "nxpar", service.ranks, npoints, publisher.wait(), t_closed, state)


def run_single_process(stack, publisher: PublisherProcess, sc: PointScenario, npoints: int, scan_nb: int,
                       doc: Document, slices: SliceSet | None) -> None:
    filename = str(stack.rundir / f"single{scan_nb}.h5")
    key = publisher.create(**_spec(sc, "bench_single", filename, scan_nb, npoints))
    child = Child(single_process_writer, stack.url, key, filename, name="single_process_writer")
    if slices is not None:
        slices.place(child.pid, Role.BASELINE)
    try:
        child.message(timeout=60)  # ready
        publisher.start_publish(batch=sc.batch, rate_hz=sc.rate_hz)
        t_closed = child.message(timeout=600)
    finally:
        child.stop()
    problem = check_file(publisher, filename, scan_nb, npoints)
    _record(doc, sc, "single-process", 1, npoints, publisher.wait(), t_closed, f"BAD: {problem}" if problem else "OFF")


def run(args, doc: Document, slices: SliceSet | None) -> None:
    with bench_stack("points", slices, keep=args.keep) as stack:
        services = {r: stack.start_service(f"points{r}", r, log_level=args.log) for r in args.ranks}
        publisher = PublisherProcess(stack.url, {}, slices)
        try:
            scan_nb = 0
            for sc in (SCENARIOS[name] for name in args.scenario):
                npoints = args.points or sc.npoints
                for _ in range(args.repeat):  # interleaved: every writer sees the same machine state
                    scan_nb += 1
                    run_single_process(stack, publisher, sc, npoints, scan_nb, doc, slices)
                    for ranks in args.ranks:
                        scan_nb += 1
                        run_nxpar(stack, services[ranks], publisher, sc, npoints, scan_nb, doc)
        finally:
            publisher.close()
            for service in services.values():
                stack.stop_service(service)
