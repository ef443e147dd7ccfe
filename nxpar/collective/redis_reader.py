"""ALL WRITER RANKS: read a rank's own share of a stream straight from Redis (no funnel via rank 0)."""
from __future__ import annotations

import numpy as np
from blissdata.exceptions import IndexNoMoreThereError
from blissdata.redis_engine.store import DataStore

from ..redis_retry import call_with_backoff
from ..steps import StreamSource

RETRY_FOR_S = 10.0  # connection errors: back off for this long, then give up (scan FAULT)


class StreamReader:
    """Caches one DataStore per Redis URL and one loaded scan per scan key."""

    def __init__(self) -> None:
        self._stores: dict[str, DataStore] = {}
        self._event_streams: dict[tuple[str, str], object] = {}

    def read(self, source: StreamSource, start: int, stop: int) -> np.ndarray:
        def read_rows() -> np.ndarray:
            return self._event_stream(source)[start:stop]  # one XRANGE for the whole share

        try:
            rows = call_with_backoff(read_rows, f"reading {source.stream_name}", RETRY_FOR_S, self._reconnect)
        except IndexNoMoreThereError as e:
            raise RuntimeError(f"rows {start}..{stop - 1} of {source.stream_name} were trimmed from Redis "
                               "before they were written") from e
        if len(rows) != stop - start:
            raise RuntimeError(f"rows {start}..{stop - 1} of {source.stream_name} are not in Redis any more "
                               f"(got {len(rows)}): Redis restarted or the data expired")
        return rows

    def _reconnect(self) -> None:
        self._stores.clear()
        self._event_streams.clear()

    def forget(self, scan_id: str) -> None:
        self._event_streams = {k: v for k, v in self._event_streams.items() if k[0] != scan_id}

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
