"""Mosca-rate benchmark: 10 detector elements × 4096 uint32 channels at 1 kHz (160 MB/s of spectra).

    python -m perf.mosca_rate                        # 1 2 3 ranks, 2000 points, paced and flat out
    python -m perf.mosca_rate --ranks 2 --points 1000 --mode paced

The scan is published as BLISS + bliss-mosca do: one `MoscaStream` per element (blissdata-mosca's
class) whose JSON events `{last_read_index, last_saved_index}` come every 50 ms (Mosca's polling),
the spectra in Mosca's files (written before the scan, as Mosca lays them out: `fx_spectra_NNNN.h5`,
500 points per file, bitshuffle), plus the timer/diode counters. nxpar's writer ranks read the
spectra from the files and write them compressed (bitshuffle-LZ4, whole spectra per chunk).

paced: events at 1 kHz of points; flat out: one event reports every point at once (the writer's
own throughput). Baseline, in the same run: one process reading the same files with h5py and
writing them with the same chunks and filter (no Redis, no MPI): the copy blisswriter's design
would do at best. Measured: MB/s of spectra from the first event to the file closed, and the lag
between the end of publishing and the file closed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perf.bench_stack import bench_stack, start_services

ROOT = Path(__file__).resolve().parent.parent
ELEMENTS, CHANNELS, PER_FILE, RATE_HZ, POLL_S = 10, 4096, 500, 1000.0, 0.05


@dataclass
class Run:
    mode: str
    writer: str
    ranks: int
    mb_per_s: float
    lag_s: float
    state: str


def mosca_spectra(npoints: int, seed: int = 0) -> np.ndarray:
    """(elements, points, channels) uint32: a few fluorescence lines over a background, Poisson."""
    rng = np.random.default_rng(seed)
    ch = np.arange(CHANNELS)
    shape = 2.0 + 30 * np.exp(-ch / 900.0)
    for centre, height in ((640, 400), (705, 80), (1480, 250), (2010, 120), (3320, 60)):
        shape = shape + height * np.exp(-0.5 * ((ch - centre) / 9.0) ** 2)
    out = np.empty((ELEMENTS, npoints, CHANNELS), dtype=np.uint32)
    for e in range(ELEMENTS):
        out[e] = rng.poisson(shape * (0.8 + 0.04 * e), size=(npoints, CHANNELS))
    return out


def baseline(files_dir: Path, npoints: int, out: str) -> float:
    """Seconds for one process to copy every element's spectra (same chunks and filter as nxpar)."""
    import h5py

    from nxpar.writers.filters import filter_kwargs

    rows = max((1 << 20) // (CHANNELS * 4), 1)
    t0 = time.perf_counter()
    with h5py.File(out, "w") as f:
        for e in range(ELEMENTS):
            d = f.create_dataset(f"fx_det{e}/spectrum", shape=(npoints, CHANNELS), dtype=np.uint32,
                                 chunks=(rows, CHANNELS), **filter_kwargs("lz4-bitshuffle"))
            for number in range(-(-npoints // PER_FILE)):
                with h5py.File(files_dir / f"fx_spectra_{number:04d}.h5", "r", locking=False) as src:
                    block = src[f"/entry_0000/fx/data/spectra_{e:02d}"][()]
                d[number * PER_FILE:number * PER_FILE + len(block)] = block
    return time.perf_counter() - t0


def run_nxpar(proxy, url: str, session: str, filename: str, nb: int, npoints: int, saving: dict, mode: str,
              ranks: int, expected: np.ndarray) -> Run:
    from tests.helpers import wait_scan_done, wait_scan_exists
    from tests.plugin_publish import PluginScan

    mosca = {e: {"size": CHANNELS, "saving": saving} for e in range(ELEMENTS)}
    pub = PluginScan(url, session, filename, nb, npoints, mosca=mosca, chunk_options={}).create()
    wait_scan_exists(proxy, f"{nb}_ascan")
    pub.prepare_start()
    t0 = time.perf_counter()
    sent = 0
    while sent < npoints:
        target = npoints if mode == "flat out" else min(npoints, int((time.perf_counter() - t0 + POLL_S) * RATE_HZ))
        if target > sent:
            pub.points(sent, target)
            pub.mosca_status(target - 1, target - 2)
            sent = target
        time.sleep(max(t0 + sent / RATE_HZ - time.perf_counter(), 0.0) if mode != "flat out" else 0)
    for s in list(pub.spectra.values()) + list(pub.scalars.values()) + list(pub.stats.values()):
        s.join()
    t_end = time.perf_counter()
    pub.stop_close()
    state = wait_scan_done(proxy, f"{nb}_ascan", timeout=600)
    t_closed = time.perf_counter()
    if state == "OFF":
        import h5py
        import hdf5plugin  # noqa: F401

        with h5py.File(filename, "r", locking=False) as f:
            for e in (0, ELEMENTS - 1):
                if not np.array_equal(f[f"{nb}.1/instrument/fx_det{e}/spectrum"][()], expected[e]):
                    state = f"BAD: element {e} differs"
    else:
        state = f"{state}: {proxy.scan_state_reason(f'{nb}_ascan')}"
    return Run(mode, "nxpar", ranks, expected.nbytes / 1e6 / (t_closed - t0), t_closed - t_end, state)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--mode", nargs="+", default=["paced", "flat out"], choices=["paced", "flat out"])
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)

    from tests.plugin_publish import service_env, write_mosca_files

    with bench_stack("nxpar-mosca-") as (stack, url, base):
        data = mosca_spectra(args.points)
        saving = write_mosca_files(base / "mosca", "fx", data, list(range(ELEMENTS)), PER_FILE)
        proxies = start_services(stack, "mosca", args.ranks, extra_env=service_env(plugins=True))
        runs: list[Run] = []
        nb = 0
        for _ in range(args.repeat):
            seconds = baseline(base / "mosca", args.points, str(base / "baseline.h5"))
            runs.append(Run("copy", "single-process h5py", 1, data.nbytes / 1e6 / seconds, 0.0, "OFF"))
            print(f"  baseline: {runs[-1].mb_per_s:.0f} MB/s", flush=True)
            for mode in args.mode:
                for ranks in args.ranks:
                    nb += 1
                    runs.append(run_nxpar(proxies[ranks], url, f"mosca{ranks}", str(base / f"n{nb}.h5"), nb,
                                          args.points, saving, mode, ranks, data))
                    r = runs[-1]
                    print(f"  nxpar {mode} ranks={ranks}: {r.state}, {r.mb_per_s:.0f} MB/s, lag {r.lag_s:.2f} s",
                          flush=True)
                    os.remove(base / f"n{nb}.h5")
        print(table(runs, args.points, data.nbytes), flush=True)


def table(runs: list[Run], npoints: int, nbytes: int) -> str:
    base = statistics.median(r.mb_per_s for r in runs if r.writer != "nxpar")
    lines = [f"\n### Mosca-like: {ELEMENTS} elements × {CHANNELS} uint32, {npoints} points "
             f"({nbytes / 1e6:.0f} MB), published at {RATE_HZ:.0f} Hz (paced) or at once (flat out)\n",
             "| writer | mode | ranks | MB/s (first event → file closed) | × single-process copy | "
             "lag after end s | state |",
             "|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.writer, r.mode, r.ranks), []).append(r)
    for (writer, mode, ranks), rs in groups.items():
        rate = statistics.median(r.mb_per_s for r in rs)
        lines.append(f"| {writer} | {mode} | {ranks} | {rate:.0f} | {rate / base:.2f} | "
                     f"{statistics.median(r.lag_s for r in rs):.2f} | {rs[-1].state} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
