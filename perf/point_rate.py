"""Point-rate benchmark: kHz scans of small rows (counters, MCA spectra, tiny images).

    python -m perf.point_rate                       # both scenarios, 1 2 3 ranks, 3 repeats
    python -m perf.point_rate --scenario mixed --ranks 2 --repeat 1

Scenarios (BLISS-like scan_info, blissdata streams on real Redis):
  mixed    20 000 points of 4 counters + a 256-channel MCA (+ its realtime) + a 4x4 image,
           published flat out, one point per Redis event (~7 kHz here)
  mixed-blocks  the same, 10 points per event (a continuous scan's block size; ~40 kHz here)
  scalars  100 000 points of 4 counters at 10 kHz (100 points per event, paced by the clock):
           an ftimescan; the writer must keep up with the publisher

For each, nxpar at every rank count and, in the same run, the single-process baseline of
blisswriter's design (`perf.single_process_writer`: one process follows every stream with a
blissdata CursorGroup and writes with h5py, same chunks and filters). Measured: points/s from the
first publish to the file closed, and the lag = file closed - end of publishing.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from perf.bench_stack import bench_stack, start_services

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "perf" / "out"


@dataclass(frozen=True)
class Scenario:
    name: str
    npoints: int
    batch: int  # points per Redis event
    rate_hz: float | None  # None: flat out
    mca_channels: int | None
    image_shape: tuple[int, int] | None


SCENARIOS = {
    "mixed": Scenario("mixed", 20_000, 1, None, 256, (4, 4)),
    "mixed-blocks": Scenario("mixed-blocks", 20_000, 10, None, 256, (4, 4)),
    "scalars": Scenario("scalars", 100_000, 100, 10_000.0, None, None),
}


@dataclass
class PointRun:
    scenario: str
    writer: str  # "nxpar" or "single-process"
    ranks: int
    npoints: int
    publish_rate_hz: float
    points_per_s: float  # first publish -> file closed
    lag_s: float  # end of publishing -> file closed
    state: str


def _spec(sc: Scenario, session: str, filename: str, scan_nb: int):
    from launch.simulate import ScanSpec

    return ScanSpec(session, filename, scan_nb, sc.npoints, image_shape=sc.image_shape,
                    mca_channels=sc.mca_channels)


def _publish(pub, sc: Scenario) -> tuple[float, float]:
    """(t0, t_end): first publish, publisher done (streams joined, scan closed)."""
    pub.prepare_start()
    t0 = time.perf_counter()
    while pub.sent < sc.npoints:
        pub.send(min(sc.batch, sc.npoints - pub.sent), sc.batch)
        if sc.rate_hz:
            time.sleep(max(t0 + pub.sent / sc.rate_hz - time.perf_counter(), 0.0))
    for stream in pub.streams.values():
        stream.join()
    pub.stop_close()
    return t0, time.perf_counter()


def check_file(filename: str, scan_nb: int, npoints: int, pub) -> str:
    """'' or what is wrong: every measurement dataset has all points, counters equal what was published."""
    import h5py
    import hdf5plugin  # noqa: F401

    with h5py.File(filename, "r", locking=False) as f:
        measurement = f[f"{scan_nb}.1/measurement"]
        for name, dset in measurement.items():
            if isinstance(dset, h5py.Dataset) and dset.shape[0] != npoints:
                return f"{name} has {dset.shape[0]} points, {npoints} published"
        if not np.array_equal(measurement["diode"][()], pub.expected("diode_ctrl:diode", npoints)):
            return "diode values differ from the published ones"
    return ""


def run_nxpar(proxy, url: str, sc: Scenario, session: str, filename: str, scan_nb: int, ranks: int) -> PointRun:
    from launch.simulate import ScanPublisher

    pub = ScanPublisher(url, _spec(sc, session, filename, scan_nb))
    deadline = time.monotonic() + 10
    while not proxy.scan_exists(pub.spec.name):
        if time.monotonic() > deadline:
            raise RuntimeError("the writer did not register the scan within 10 s")
        time.sleep(0.01)
    t0, t_end = _publish(pub, sc)
    while str(proxy.scan_state(pub.spec.name)) in ("INIT", "ON"):
        time.sleep(0.005)
    t_closed = time.perf_counter()
    state = str(proxy.scan_state(pub.spec.name))
    if state == "OFF":
        problem = check_file(filename, scan_nb, sc.npoints, pub)
        state = f"BAD: {problem}" if problem else state
    else:
        state = f"{state}: {proxy.scan_state_reason(pub.spec.name)}"
    return PointRun(sc.name, "nxpar", ranks, sc.npoints, sc.npoints / (t_end - t0), sc.npoints / (t_closed - t0),
                    t_closed - t_end, state)


def run_single_process(url: str, sc: Scenario, filename: str, scan_nb: int) -> PointRun:
    """The same publisher while a separate process (blisswriter's design) writes the scan."""
    from launch.simulate import ScanPublisher
    from perf.single_process_writer import follow_and_write

    pub = ScanPublisher(url, _spec(sc, "bench_single", filename, scan_nb))
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Queue()
    follower = ctx.Process(target=follow_and_write, args=(url, pub.scan.key, filename, done))
    follower.start()
    if done.get(timeout=60) != "ready":
        raise RuntimeError("the single-process writer did not start")
    t0, t_end = _publish(pub, sc)
    t_closed_epoch = done.get(timeout=600)
    follower.join()
    t_closed = time.perf_counter() - (time.time() - t_closed_epoch)  # the child's clock is time.time()
    problem = check_file(filename, scan_nb, sc.npoints, pub)
    return PointRun(sc.name, "single-process", 1, sc.npoints, sc.npoints / (t_end - t0),
                    sc.npoints / (t_closed - t0), t_closed - t_end, f"BAD: {problem}" if problem else "OFF")


def table(runs: list[PointRun], sc: Scenario) -> str:
    base = [r for r in runs if r.writer == "single-process"]
    base_lag = statistics.median(r.lag_s for r in base)
    base_rate = statistics.median(r.points_per_s for r in base)
    lines = [f"\n### {sc.name}: {sc.npoints} points, {sc.batch} points/event, "
             f"{'flat out' if not sc.rate_hz else f'{sc.rate_hz:.0f} Hz'} (median of {len(base)}, min-max)\n",
             "| writer | ranks | published Hz | written points/s | × single-process | lag after end s | "
             "target lag ≤ max(0.5, 2× single) |", "|---|---|---|---|---|---|---|"]
    target = max(0.5, 2 * base_lag)
    groups: dict[tuple[str, int], list[PointRun]] = {}
    for r in runs:
        groups.setdefault((r.writer, r.ranks), []).append(r)
    for (writer, ranks), rs in groups.items():
        lag = statistics.median(r.lag_s for r in rs)
        rate = statistics.median(r.points_per_s for r in rs)
        lines.append(f"| {writer} | {ranks} | {statistics.median(r.publish_rate_hz for r in rs):.0f} | "
                     f"{rate:.0f} ({min(r.points_per_s for r in rs):.0f}-{max(r.points_per_s for r in rs):.0f}) | "
                     f"{rate / base_rate:.2f} | {lag:.2f} ({min(r.lag_s for r in rs):.2f}-{max(r.lag_s for r in rs):.2f}) | "
                     f"{'met' if lag <= target else 'NOT met'} ({target:.2f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--log", default="WARNING", help="service log level (INFO logs each scan's timeline)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (service logs, files)")
    args = p.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    with bench_stack("nxpar-points-", keep=args.keep) as (stack, url, base):
        proxies = start_services(stack, "points", args.ranks, args.log)
        scan_nb = 0
        for name in args.scenario:
            sc = SCENARIOS[name]
            runs: list[PointRun] = []
            for _ in range(args.repeat):  # interleaved: every writer sees the same machine state
                scan_nb += 1
                runs.append(run_single_process(url, sc, str(base / f"single{scan_nb}.h5"), scan_nb))
                for ranks in args.ranks:
                    scan_nb += 1
                    runs.append(run_nxpar(proxies[ranks], url, sc, f"points{ranks}", str(base / f"n{scan_nb}.h5"),
                                          scan_nb, ranks))
                for r in runs[-len(args.ranks) - 1:]:
                    print(f"  {r.writer} ranks={r.ranks}: {r.state}, published {r.publish_rate_hz:.0f} Hz, "
                          f"{r.points_per_s:.0f} points/s, lag {r.lag_s:.2f} s", flush=True)
                    with open(OUT / "point_rate.jsonl", "a") as fh:
                        fh.write(json.dumps(asdict(r)) + "\n")
            print(table(runs, sc), flush=True)


if __name__ == "__main__":
    main()
