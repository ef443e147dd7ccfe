"""The single-process baseline of blisswriter's design, for same-run ratios (point rates, frames, the
emulated many-core box).

One process follows every stream of a scan with a blissdata `CursorGroup` (one blocking Redis
read for all streams) and appends what arrives to h5py datasets (serial driver), with the chunks
and filters nxpar would choose. As blisswriter 2.0.0 does (writer/datasets.py), points are
buffered per dataset and saved aligned with the HDF5 chunks, unaligned when the oldest buffered
point waited more than 3 s, and whatever is left at the end. Run in a child process:
`follow_and_write(url, key, path, queue)` (perf/core/child.py's Channel is such a queue)
puts "ready" once attached, then the time.perf_counter() (CLOCK_MONOTONIC, the same clock
in every process) at which the file was closed.
"""
from __future__ import annotations

import time


def follow_and_write(url: str, scan_key: str, filename: str, done) -> None:
    import h5py
    import hdf5plugin  # noqa: F401
    from blissdata.exceptions import EndOfStream
    from blissdata.redis_engine.scan import ScanState
    from blissdata.redis_engine.store import DataStore
    from blissdata.streams import CursorGroup

    from nxpar.nexus.chunking import ChunkOptions, dataset_layout, fill_value
    from nxpar.writers.filters import filter_kwargs

    scan = DataStore(url).load_scan(scan_key)
    done.put("ready")
    while scan.state < ScanState.PREPARED:
        scan.update(timeout=1)
    npoints = int(scan.info.get("npoints") or 0)
    options = ChunkOptions.from_scan_info(scan.info)
    with h5py.File(filename, "w") as f:
        measurement = f.create_group(f"{scan.info['scan_nb']}.1/measurement")
        datasets = {}
        for name, stream in scan.streams.items():
            shape, dtype = tuple(stream.shape), str(stream.dtype)
            chunks, scheme = dataset_layout((npoints,), shape, dtype, options)
            datasets[name] = measurement.create_dataset(
                name.split(":")[-1], shape=(0,) + shape, maxshape=(None,) + shape, dtype=dtype, chunks=chunks,
                fillvalue=fill_value(dtype), **filter_kwargs(scheme))
        buffers = {name: ChunkAlignedBuffer(dset) for name, dset in datasets.items()}
        cursor = CursorGroup(scan.streams)
        while True:
            try:
                views = cursor.read(timeout=0.1)
            except EndOfStream:
                break
            for stream, view in views.items():
                buffers[stream.name].add(view.get_data())
        for buffer in buffers.values():
            buffer.save(len(buffer.pending))
        while scan.state < ScanState.CLOSED:
            scan.update(timeout=1)
    done.put(time.perf_counter())


class ChunkAlignedBuffer:
    """blisswriter's internal buffer of one dataset: save whole chunks, or all after DTMAX_S."""

    DTMAX_S = 3.0

    def __init__(self, dset) -> None:
        self.dset = dset
        self.rows_per_chunk = dset.chunks[0]
        self.pending: list = []
        self.saved = 0
        self.since = time.time()

    def add(self, rows) -> None:
        self.pending.extend(rows)
        to_boundary = self.rows_per_chunk - self.saved % self.rows_per_chunk
        nsave = len(self.pending) // to_boundary * to_boundary
        if not nsave and time.time() - self.since > self.DTMAX_S:
            nsave = len(self.pending)
        if nsave:
            self.save(nsave)

    def save(self, nsave: int) -> None:
        if not nsave:
            return
        import numpy as np

        stop = self.saved + nsave
        self.dset.resize(stop, axis=0)
        self.dset[self.saved:stop] = np.asarray(self.pending[:nsave])
        del self.pending[:nsave]
        self.saved = stop
        self.since = time.time()
