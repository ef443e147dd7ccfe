"""ALL WRITER RANKS: read a rank's own share of a stream straight from Redis (no funnel via rank 0)."""
from __future__ import annotations

import numpy as np
from blissdata.exceptions import IndexNoMoreThereError
from blissdata.redis_engine.store import DataStore

from ..blissdata_raw import batch_rows, data_entries, fixed_numeric, redis_of
from ..redis_retry import call_with_backoff
from ..steps import StreamSource

RETRY_FOR_S = 10.0  # connection errors: back off for this long, then give up (scan FAULT)


class StreamReader:
    """Caches one DataStore per Redis URL and one loaded scan per scan key.

    Fixed-shape numeric streams are decoded straight into a buffer kept per stream (one copy of
    each row, into memory that is already mapped); other streams go through blissdata's decoder.
    All fixed-shape reads of a step go to Redis in one pipelined round trip. The rows returned
    are valid until the next read of the same stream.
    """

    def __init__(self) -> None:
        self._stores: dict[str, DataStore] = {}
        self._event_streams: dict[tuple[str, str], object] = {}
        self._buffers: dict[tuple[str, str], np.ndarray] = {}

    def read(self, source: StreamSource, start: int, stop: int) -> np.ndarray:
        return self.read_many([(source, start, stop)])[0]

    def read_many(self, requests: list[tuple[StreamSource, int, int]]) -> list[np.ndarray]:
        """Rows [start, stop) of each source, retried with back-off on connection errors."""
        if not requests:
            return []
        try:
            results = call_with_backoff(lambda: self._read_all(requests), "reading streams", RETRY_FOR_S,
                                        self._reconnect)
        except IndexNoMoreThereError as e:
            raise RuntimeError(f"rows were trimmed from Redis before they were written: {e}") from e
        for (source, start, stop), rows in zip(requests, results):
            if len(rows) != stop - start:
                raise RuntimeError(f"rows {start}..{stop - 1} of {source.stream_name} are not in Redis any more "
                                   f"(got {len(rows)}): Redis restarted or the data expired")
        return results

    def _read_all(self, requests: list[tuple[StreamSource, int, int]]) -> list[np.ndarray]:
        streams = [self._event_stream(source) for source, _, _ in requests]
        fast = [i for i, stream in enumerate(streams) if fixed_numeric(stream)]
        results: list = [None] * len(requests)
        if fast:
            redis = redis_of(streams[fast[0]])
            pipe = redis.pipeline(transaction=False)
            for i in fast:  # the batch holding `start`, then the batches after it
                _, start, stop = requests[i]
                pipe.xrevrange(streams[i].key, max=start, count=1)
                pipe.xrange(streams[i].key, min=start + 1, max=max(stop - 1, start + 1))
            replies = pipe.execute()
            for n, i in enumerate(fast):
                raw = replies[2 * n] + replies[2 * n + 1]
                results[i] = self._decode_into_buffer(requests[i], streams[i], raw)
        for i, (source, start, stop) in enumerate(requests):
            if results[i] is None:  # variable shapes, other encodings, trimmed data: blissdata decodes
                results[i] = streams[i][start:stop]
        return results

    def _decode_into_buffer(self, request: tuple[StreamSource, int, int], stream, raw: list) -> np.ndarray | None:
        """Copy the payloads of [start, stop) into the stream's buffer; None when they are not all
        there (trimmed), so that blissdata's decoder raises the right error."""
        source, start, stop = request
        shape, dtype = tuple(stream.shape), np.dtype(stream.dtype)
        entries = data_entries(raw)
        if not entries or entries[0].id > start or entries[0].id + entries[0].length <= start:
            return None
        key = (source.scan_key, source.stream_name)
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < stop - start or buf.shape[1:] != shape or buf.dtype != dtype:
            buf = self._buffers[key] = np.empty((stop - start,) + shape, dtype=dtype)
        out = buf[:stop - start]
        filled = 0
        for e in entries:
            lo, hi = max(start - e.id, 0), min(stop - e.id, e.length)
            if hi > lo:
                batch = batch_rows(e, dtype, shape)
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

