"""mosca: 10 Mosca elements × 4096 uint32 channels at 1 kHz (160 MB/s of spectra), copied from Mosca's
files by nxpar's writer ranks, against one process copying the same files (the old `perf.mosca_rate`).

    python -m perf mosca                             # 1 2 3 ranks, 2000 points, paced and flat out
    python -m perf mosca --ranks 2 --points 1000 --mode paced

Published as BLISS + bliss-mosca do: one `MoscaStream` per element whose JSON events
`{last_read_index, last_saved_index}` come every 50 ms, the spectra in Mosca's files (written before
the scan, `fx_spectra_NNNN.h5`, 500 points per file), plus the timer/diode counters. paced: events at
1 kHz of points; flat out: one event reports every point. Baseline, same run: one process copying the
same files with h5py, same chunks and filter. Measured: MB/s of spectra from the first event to the
file closed, and the lag after the end of publishing; elements 0 and 9 compared with what was saved.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..core.results import Document
from ..core.slices import SliceSet
from ..core.stack import bench_stack

SLICES = False
ELEMENTS, CHANNELS, PER_FILE, RATE_HZ, POLL_S = 10, 4096, 500, 1000.0, 0.05


def add_arguments(p) -> None:
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--mode", nargs="+", default=["paced", "flat out"], choices=["paced", "flat out"])
    p.add_argument("--repeat", type=int, default=1)


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


def baseline_s(files_dir: Path, npoints: int, out: str) -> float:
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


def _publish(pub, npoints: int, mode: str) -> tuple[float, float]:
    """(t0, t_end): first event, every stream joined."""
    pub.prepare_start()
    t0, sent = time.perf_counter(), 0
    while sent < npoints:
        target = npoints if mode == "flat out" else min(npoints, int((time.perf_counter() - t0 + POLL_S) * RATE_HZ))
        if target > sent:
            pub.points(sent, target)
            pub.mosca_status(target - 1, target - 2)
            sent = target
        time.sleep(max(t0 + sent / RATE_HZ - time.perf_counter(), 0.0) if mode != "flat out" else 0)
    for s in list(pub.spectra.values()) + list(pub.scalars.values()) + list(pub.stats.values()):
        s.join()
    return t0, time.perf_counter()


def check(filename: str, nb: int, expected: np.ndarray) -> str:
    import h5py
    import hdf5plugin  # noqa: F401

    with h5py.File(filename, "r", locking=False) as f:
        for e in (0, ELEMENTS - 1):
            if not np.array_equal(f[f"{nb}.1/instrument/fx_det{e}/spectrum"][()], expected[e]):
                return f"BAD: element {e} differs"
    return "OFF"


def run_nxpar(stack, service, nb: int, npoints: int, saving: dict, mode: str, expected: np.ndarray,
              doc: Document) -> None:
    from tests.helpers import wait_scan_done, wait_scan_exists
    from tests.plugin_publish import PluginScan

    filename = str(stack.rundir / f"n{nb}.h5")
    mosca = {e: {"size": CHANNELS, "saving": saving} for e in range(ELEMENTS)}
    pub = PluginScan(stack.url, service.instance, filename, nb, npoints, mosca=mosca, chunk_options={}).create()
    wait_scan_exists(service.proxy, f"{nb}_ascan")
    t0, t_end = _publish(pub, npoints, mode)
    pub.stop_close()
    state = wait_scan_done(service.proxy, f"{nb}_ascan", timeout=600)
    t_closed = time.perf_counter()
    state = check(filename, nb, expected) if state == "OFF" else \
        f"{state}: {service.proxy.scan_state_reason(f'{nb}_ascan')}"
    r = doc.add("copy", mode=mode, writer="nxpar", ranks=service.ranks, mb_per_s=expected.nbytes / 1e6 / (t_closed - t0),
                lag_s=t_closed - t_end, state=state)
    print(f"  nxpar {mode} ranks={service.ranks}: {state}, {r['mb_per_s']:.0f} MB/s, lag {r['lag_s']:.2f} s", flush=True)
    os.remove(filename)


def run(args, doc: Document, _slices: SliceSet | None) -> None:
    from tests.plugin_publish import service_env, write_mosca_files

    with bench_stack("mosca", None, keep=args.keep) as stack:
        data = mosca_spectra(args.points)
        saving = write_mosca_files(stack.rundir / "mosca", "fx", data, list(range(ELEMENTS)), PER_FILE)
        services = [stack.start_service(f"mosca{r}", r, env=service_env(plugins=True)) for r in args.ranks]
        try:
            nb = 0
            for _ in range(args.repeat):
                seconds = baseline_s(stack.rundir / "mosca", args.points, str(stack.rundir / "baseline.h5"))
                doc.add("copy", mode="copy", writer="single-process h5py", ranks=1, mb_per_s=data.nbytes / 1e6 / seconds,
                        lag_s=0.0, state="OFF")
                for mode in args.mode:
                    for service in services:
                        nb += 1
                        run_nxpar(stack, service, nb, args.points, saving, mode, data, doc)
        finally:
            for service in services:
                stack.stop_service(service)
