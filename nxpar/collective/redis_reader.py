"""ALL WRITER RANKS: read a rank's own share of a stream straight from Redis (no funnel via rank 0)."""
from __future__ import annotations

import numpy as np
from blissdata.exceptions import IndexNoMoreThereError
from blissdata.redis_engine.store import DataStore
from blissdata.streams.encoding.numeric import NumericStreamEncoder
from blissdata.streams.event_stream import StreamEntry

from ..redis_retry import call_with_backoff
from ..steps import StreamSource

RETRY_FOR_S = 10.0  # connection errors: back off for this long, then give up (scan FAULT)


class StreamReader:
    """Caches one DataStore per Redis URL and one loaded scan per scan key.

    Fixed-shape numeric streams are decoded straight into a buffer kept per stream (one copy of
    each frame, into memory that is already mapped); other streams go through blissdata's decoder.
    The rows returned are valid until the next read of the same stream.
    """

    def __init__(self) -> None:
        self._stores: dict[str, DataStore] = {}
        self._event_streams: dict[tuple[str, str], object] = {}
        self._buffers: dict[tuple[str, str], np.ndarray] = {}

    def read(self, source: StreamSource, start: int, stop: int) -> np.ndarray:
        def read_rows() -> np.ndarray:
            stream = self._event_stream(source)
            rows = self._read_into_buffer(source, stream, start, stop)
            return rows if rows is not None else stream[start:stop]  # one XRANGE for the whole share

        try:
            rows = call_with_backoff(read_rows, f"reading {source.stream_name}", RETRY_FOR_S, self._reconnect)
        except IndexNoMoreThereError as e:
            raise RuntimeError(f"rows {start}..{stop - 1} of {source.stream_name} were trimmed from Redis "
                               "before they were written") from e
        if len(rows) != stop - start:
            raise RuntimeError(f"rows {start}..{stop - 1} of {source.stream_name} are not in Redis any more "
                               f"(got {len(rows)}): Redis restarted or the data expired")
        return rows

    def _read_into_buffer(self, source: StreamSource, stream, start: int, stop: int) -> np.ndarray | None:
        """One XRANGE, payloads copied into the stream's buffer; None when blissdata must decode
        (variable shapes, other encodings, or a first batch that begins before `start`)."""
        if not isinstance(stream._encoder, NumericStreamEncoder):
            return None
        shape, dtype = tuple(stream.shape), np.dtype(stream.dtype)
        if any(n < 0 for n in shape):
            return None
        redis = stream._data_store._redis
        entries = [StreamEntry.from_raw(item) for item in redis.xrange(stream.key, min=start, max=stop - 1)]
        if not entries or entries[0].id > start:  # `start` lies inside an earlier batch of points
            entries[:0] = [StreamEntry.from_raw(item) for item in redis.xrevrange(stream.key, max=start, count=1)]
        entries = [e for e in entries if not e.is_seal]
        if not entries or entries[0].id > start:
            return None  # trimmed: blissdata's decoder raises the right error
        key = (source.scan_key, source.stream_name)
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < stop - start or buf.shape[1:] != shape or buf.dtype != dtype:
            buf = self._buffers[key] = np.empty((stop - start,) + shape, dtype=dtype)
        out = buf[:stop - start]
        filled = 0
        for e in entries:
            batch = np.frombuffer(e.batch.payload, dtype=dtype).reshape((e.length,) + shape)
            lo, hi = max(start - e.id, 0), min(stop - e.id, e.length)
            if hi > lo:
                out[filled:filled + hi - lo] = batch[lo:hi]
                filled += hi - lo
        return out[:filled]

    def _reconnect(self) -> None:
        self._stores.clear()
        self._event_streams.clear()

    def forget(self, scan_id: str) -> None:
        self._event_streams = {k: v for k, v in self._event_streams.items() if k[0] != scan_id}
        self._buffers = {k: v for k, v in self._buffers.items() if k[0] != scan_id}

    def _event_stream(self, source: StreamSource):
        key = (source.scan_key, source.stream_name)
        stream = self._event_streams.get(key)
        if stream is None:
            store = self._stores.get(source.redis_url)
            if store is None:
                store = self._stores[source.redis_url] = DataStore(source.redis_url)
            scan = store.load_scan(source.scan_key)
            # The raw event stream: Hdf5BackedStream is never read back from the file being written.
            stream = scan.streams[source.stream_name].event_stream
            self._event_streams[key] = stream
        return stream
