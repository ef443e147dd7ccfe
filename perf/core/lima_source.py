"""A Lima detector whose frames are already in its HDF5 files, as BLISS publishes it: the files
(`write_lima_files`), the scan (`lima_publisher`: BLISS's scalars plus one Lima stream whose JSON
status events report frames acquired and saved), the one-process copy of the same files (the
baseline, `copy_in_one_process`) and what the scan file must hold afterwards (`check_copy`).

The files are Lima's plain HDF5 format: one dataset of `frames_per_file` frames per file, chunked one
frame per chunk, not compressed; frame i is pool[i % len(pool)] (a pool of realistic frames,
perf/core/stack.py). A writer with `disable_external_hdf5` + `copy_non_external` copies them into the
scan file (nxpar: `FileFramesSource`, read by the writer ranks, nxpar/sources/lima_files.py).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

DETECTOR = "lima_simulator"
CHANNEL = f"{DETECTOR}:image"
DEVICE = f"1005:{DETECTOR}"
DATA_PATH = f"/entry_0000/ESRF-id00/{DETECTOR}/data"
COPY_PROPERTIES = {"disable_external_hdf5": True, "copy_non_external": True}  # frames copied, not linked


@dataclass(frozen=True)
class LimaFiles:
    """Frames 0..frames-1 of one acquisition in Lima's files; `saving` is the Lima stream's saving info."""

    directory: str
    frames: int
    frames_per_file: int
    shape: tuple[int, int]
    dtype: str

    @property
    def saving(self) -> dict[str, Any]:
        return {"file_offset": 0, "frames_per_file": self.frames_per_file, "file_format": "hdf5",
                "file_path": str(Path(self.directory) / f"{DETECTOR}_%04d.h5"), "data_path": DATA_PATH}

    def path(self, number: int) -> Path:
        return Path(self.directory) / f"{DETECTOR}_{number:04d}.h5"


def write_lima_files(directory: Path, pool: np.ndarray, frames: int, per_file: int) -> LimaFiles:
    """The files Lima would have saved for `frames` frames (the last file holds what is left)."""
    import h5py

    directory.mkdir(parents=True, exist_ok=True)
    files = LimaFiles(str(directory), frames, per_file, tuple(pool.shape[1:]), str(pool.dtype))
    for number, lo in enumerate(range(0, frames, per_file)):
        count = min(per_file, frames - lo)
        with h5py.File(files.path(number), "w") as f:
            d = f.create_dataset(DATA_PATH, shape=(count,) + files.shape, dtype=pool.dtype,
                                 chunks=(1,) + files.shape)
            for i in range(count):
                d[i] = pool[(lo + i) % len(pool)]
    return files


def _lima_info(spec: Any) -> dict[str, Any]:
    """The scan_info keys a Lima detector changes (device, channel, chain, nexuswriter device type)."""
    from launch.simulate import scan_info

    info = scan_info(spec)
    info["devices"][DEVICE] = {"name": DETECTOR, "type": "lima", "channels": [CHANNEL]}
    info["devices"]["1002:timer"]["triggered_devices"].append(DEVICE)
    next(iter(info["acquisition_chain"].values()))["devices"].append(DEVICE)
    info["channels"][CHANNEL] = {"device": DEVICE, "dim": 2}
    info["nexuswriter"]["devices"][CHANNEL] = {"device_info": {"type": "lima"}, "device_type": "lima"}
    return {k: info[k] for k in ("devices", "acquisition_chain", "channels", "nexuswriter")}


def lima_publisher(url: str, files: LimaFiles, session: str, filename: str, scan_nb: int, frames: int,
                   scheme: str):
    """A LimaScanPublisher of a scan of `frames` points (the first frames of the files)."""
    from launch.simulate import ScanSpec

    spec = ScanSpec(session, filename, scan_nb, frames, image_shape=None, mca_channels=None,
                    chunk_options={"compression_scheme": scheme})
    return lima_publisher_class()(url, replace(spec, extra_info=_lima_info(spec)), files)


@functools.cache
def lima_publisher_class():
    """ScanPublisher with a Lima stream (a class built on first use: it needs blissdata and launch/)."""
    from blissdata.streams.lima import LimaStream
    from launch.simulate import ScanPublisher

    class LimaScanPublisher(ScanPublisher):
        """BLISS's scalars plus the Lima stream; every point's frame already saved in Lima's files."""

        def __init__(self, url: str, spec: Any, files: LimaFiles) -> None:
            super().__init__(url, spec)
            self.streams[CHANNEL] = self.scan.create_stream(LimaStream.make_definition(
                CHANNEL, files.dtype, files.shape, server_url=f"id00/limaccds/{DETECTOR}", buffer_max_number=100,
                frames_per_acquisition=spec.npoints, acquisition_offset=0, saving=files.saving))

        def expected(self, name: str, n: int, start: int = 0) -> Any:
            if name == CHANNEL:  # Lima's status event: frames acquired and saved so far
                return {"last_index": n - 1, "last_index_saved": n - 1}
            return super().expected(name, n, start)

    return LimaScanPublisher


def preload(pub: Any) -> None:
    """Every point and every Lima status in Redis before PREPARED (the writer then drains)."""
    pub.send(pub.spec.npoints, batch=pub.spec.npoints)
    for stream in pub.streams.values():
        stream.join()


def _read_frames(files: LimaFiles, opened: dict, lo: int, hi: int) -> np.ndarray:
    """Frames [lo, hi) from the files (opened once each, kept in `opened`)."""
    import h5py

    parts, i = [], lo
    while i < hi:
        number, first = divmod(i, files.frames_per_file)
        stop = min(hi, (number + 1) * files.frames_per_file)
        if number not in opened:
            opened[number] = h5py.File(files.path(number), "r", locking=False)
        parts.append(opened[number][DATA_PATH][first:first + stop - i])
        i = stop
    return np.concatenate(parts)


def copy_in_one_process(channel: Any, files: LimaFiles, frames: int, scheme: str, out: str) -> dict[str, Any]:
    """The baseline (in a child): one process reads the files chunk row by chunk row and writes them with
    h5py, nxpar's chunks and filter. Wall and CPU seconds (every thread of the process)."""
    import h5py
    import hdf5plugin  # noqa: F401

    from nxpar.nexus.chunking import ChunkOptions, dataset_layout
    from nxpar.writers.filters import filter_kwargs

    chunks, scheme = dataset_layout((frames,), files.shape, files.dtype, ChunkOptions(compression_scheme=scheme))
    opened: dict[int, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with h5py.File(out, "w") as f:
            d = f.create_dataset("data", shape=(frames,) + files.shape, dtype=files.dtype, chunks=chunks,
                                 **filter_kwargs(scheme))
            for lo in range(0, frames, chunks[0]):
                d[lo:min(lo + chunks[0], frames)] = _read_frames(files, opened, lo, min(lo + chunks[0], frames))
    finally:
        for f in opened.values():
            f.close()
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    Path(out).unlink(missing_ok=True)
    return {"seconds": seconds, "cpu_s": cpu_s, "chunks": list(chunks)}


def check_copy(filename: str, scan_nb: int, pool: np.ndarray, frames: int, compare: bool) -> dict[str, Any]:
    """The scan file's copy: its chunks, compression ratio and '' or what is wrong (frame count, a
    link instead of a copy; with `compare`, every frame against the source's)."""
    import h5py
    import hdf5plugin  # noqa: F401

    with h5py.File(filename, "r", locking=False) as f:
        d = f[f"{scan_nb}.1/instrument/{DETECTOR}/image"]
        stored = d.id.get_storage_size()
        out = {"chunks": list(d.chunks or ()), "compression_ratio": frames * pool[0].nbytes / stored if stored
               else float("nan"), "problem": ""}
        if d.is_virtual or d.external:
            out["problem"] = "the frames are linked, not copied"
        elif d.shape != (frames,) + pool.shape[1:]:
            out["problem"] = f"file has {d.shape}, expected {frames} frames of {pool.shape[1:]}"
        elif compare:
            step = max(d.chunks[0] if d.chunks else 1, 1)
            for lo in range(0, frames, step):
                hi = min(lo + step, frames)
                if not np.array_equal(d[lo:hi], pool[np.arange(lo, hi) % len(pool)]):
                    out["problem"] = f"frames {lo}..{hi - 1} differ from Lima's"
                    break
    return out
