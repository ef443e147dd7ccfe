"""RANK 0 ONLY: everything the scan driver asks blissdata/Redis about one scan, behind one class.

States and scan_info, the streams and their kind, published lengths (one pipelined round trip for
all row streams), Lima frames readable in closed files, frame references, the children of a
sequence, and a few small streams read back at the end. Redis errors are retried with back-off
(reconnecting) for `retry_s`, then raise. Bulk data is never read here: the writer ranks read it
(sources/redis_reader.py). The unit tests give the driver a fake with the same methods.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from blissdata.exceptions import ScanNotFoundError
from blissdata.redis_engine.scan import Scan, ScanState

from ..sources.blissdata_raw import (
    FrameRef,
    broken_plugin,
    decode_events,
    frame_ref,
    lima_frames_saved_and_closed,
    load_scan_info,
    raw_entries,
    redis_of,
    stream_end,
)
from ..sources.lima2_conductor import bound_lima2_handshakes
from ..util.retry import call_with_backoff

bound_lima2_handshakes()  # before any scan is loaded: blissdata asks a Lima2 conductor with a timeout


@dataclass(frozen=True)
class StreamDescription:
    """What blissdata says a stream is (kind 'array' or 'scan', plugin 'lima', 'scan_sequence', …)."""

    name: str
    kind: str | None
    plugin: str | None
    lima_info: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # the stream's info (Lima2 / Mosca: their saving)
    broken: str | None = None  # why blissdata could not load its plugin (written from raw events then)


class ScanGone(RuntimeError):
    """The scan or the data of one of its streams is not in Redis any more."""


class ScanSource:
    def __init__(self, scan: Scan, retry_s: float, check_stop: Callable[[], None] = lambda: None) -> None:
        self.scan = scan
        self.retry_s = retry_s
        self.check_stop = check_stop  # raises to abandon a retry loop (stop requested)

    @property
    def key(self) -> str:
        return self.scan.key

    @property
    def info(self) -> dict[str, Any]:
        return self.scan.info

    @property
    def state(self) -> ScanState:
        return self.scan.state

    def _call(self, func: Callable[[], Any]) -> Any:
        return call_with_backoff(func, f"scan {self.scan.key}", self.retry_s, self.check_stop)

    # -- scan state and info ---------------------------------------------------------------------
    def wait_for(self, state: ScanState) -> None:
        """Until the scan reached `state` (check_stop is called every 0.5 s)."""
        while self.scan.state < state:
            self.check_stop()
            try:
                self._call(lambda: self.scan.update(timeout=0.5))
            except ScanNotFoundError as e:
                raise ScanGone(f"the scan is gone from Redis ({e})") from e

    def refresh(self) -> None:
        """Non-blocking: pick up a newer scan state/info if one was published."""
        try:
            self.scan.update(block=False)
        except Exception:
            pass

    def sleep_until_change(self, timeout: float) -> None:
        """Sleep up to `timeout`, woken at once by a change of the scan's state: STOPPED (BLISS sealed
        its streams) or CLOSED end the scan without a poll period's wait. Errors: just the sleep (the
        driver's own reads meet them and retry)."""
        if self.scan.state >= ScanState.CLOSED:
            time.sleep(timeout)
            return
        try:
            self.scan.update(timeout=max(timeout, 0.001))  # 0 would block for good
        except Exception:
            time.sleep(timeout)

    def final_info(self) -> dict[str, Any]:
        """scan_info as published at CLOSED ({} if the scan never closed)."""
        return dict(self.scan.info) if self.scan.state >= ScanState.CLOSED else {}

    # -- streams ---------------------------------------------------------------------------------
    def streams(self) -> list[StreamDescription]:
        out = []
        for name, stream in self.scan.streams.items():
            plugin = getattr(stream, "plugin", None)
            lima_info = stream.info.get("lima_info") if plugin == "lima" else None
            info = dict(stream.info or {})
            plugin = plugin or info.get("plugin")  # a plugin stream blissdata could not load
            out.append(StreamDescription(name, getattr(stream, "kind", None), plugin, lima_info, info,
                                         broken_plugin(stream)))
        return out

    def dtype_shape(self, name: str) -> tuple[str, tuple[int, ...]]:
        stream = self.scan.streams[name]
        dtype = stream.dtype.name if hasattr(stream.dtype, "name") else str(stream.dtype)
        return dtype, tuple(stream.shape)

    def lengths(self, names: list[str]) -> dict[str, tuple[int, bool]]:
        """{stream: (rows published, sealed)} in one pipelined round trip; ScanGone if a stream
        that had rows is empty now (Redis restarted or the data expired)."""
        if not names:
            return {}
        pipe = redis_of(self.scan).pipeline(transaction=False)
        for n in names:
            pipe.xrevrange(self.scan.streams[n].key, count=1)
        return {n: stream_end(raw[0]) if raw else (0, False) for n, raw in zip(names, self._call(pipe.execute))}

    def reference_length(self, name: str) -> tuple[int, bool]:
        """(items published, sealed) of a Lima or scan-sequence stream."""
        stream = self.scan.streams[name]
        sealed = stream.event_stream.is_sealed()
        return len(stream), sealed

    def lima_saved(self, name: str) -> tuple[int, int, bool]:
        """(frames reported, frames in files Lima closed, sealed) of a Lima stream."""
        stream = self.scan.streams[name]
        sealed = stream.event_stream.is_sealed()
        return len(stream), lima_frames_saved_and_closed(stream), sealed

    def last_events(self, names: list[str]) -> dict[str, tuple[list[Any], bool]]:
        """{stream: (values of its last event (0 or 1), sealed)} in one pipelined round trip, decoded
        from the raw entries (Lima2 / Mosca, whether or not their blissdata plugin loads)."""
        if not names:
            return {}
        pipe = redis_of(self.scan).pipeline(transaction=False)
        for n in names:
            pipe.xrevrange(self.scan.streams[n].key, count=2)
        out = {}
        for n, raw in zip(names, self._call(pipe.execute)):
            entries = raw_entries(raw)
            data = [e for e in entries if not e.is_seal][:1]
            out[n] = (data, bool(entries) and entries[0].is_seal)
        return out

    def decode_last(self, name: str, entries: list[Any]) -> Any:
        """The last value of the raw entries of a stream (ValueError & co when malformed)."""
        return decode_events(self.scan.streams[name].event_stream, entries)[-1]

    def references(self, name: str, start: int, stop: int) -> list[Any]:
        """blissdata ImageReferences of frames [start, stop) (file_path, data_path, index, format)."""
        return self.scan.streams[name].get_references(slice(start, stop))

    def frame_refs(self, name: str, start: int, stop: int) -> list[FrameRef]:
        return [frame_ref(r) for r in self.references(name, start, stop)]

    def frame_dtype(self, name: str) -> np.dtype:
        return self.scan.streams[name].dtype

    def children_info(self, name: str, count: int) -> list[dict[str, Any]]:
        """scan_info of the first `count` children of a scan sequence."""
        keys = [event["key"] for event in self.scan.streams[name].event_stream[0:count]]
        return [load_scan_info(self.scan, k) for k in keys]

    def values(self, name: str, count: int) -> np.ndarray:
        """The first `count` values of a small scalar stream, as floats (mesh motor positions)."""
        return np.asarray(self.scan.streams[name][:count], dtype=float)


def missing_first_rows(scan: Scan) -> str:
    """'' or which row streams Redis no longer holds from their first row (trimmed or expired): what a
    scan written again from Redis would lack. Streams whose rows lie in detector files are not asked."""
    names = [n for n, s in scan.streams.items() if getattr(s, "kind", None) == "array"
             and getattr(s, "plugin", None) in (None, "hdf5_fallback")]
    if not names:
        return ""
    pipe = redis_of(scan).pipeline(transaction=False)
    for n in names:
        pipe.xrange(scan.streams[n].key, count=1)
    missing = []
    for n, raw in zip(names, pipe.execute()):
        first = raw_entries(raw)[0] if raw else None
        if first is not None and first.id > 0:
            missing.append(f"rows 0..{first.id - 1} of {n}")
    return ", ".join(missing)
