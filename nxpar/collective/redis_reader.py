"""ALL WRITER RANKS: read a rank's own share of a stream straight from Redis (no funnel via rank 0)."""
from __future__ import annotations

import logging
import time

import numpy as np
import redis
from blissdata.exceptions import IndexNoMoreThereError
from blissdata.redis_engine.store import DataStore

from ..steps import StreamSource

log = logging.getLogger("nxpar.collective")

RETRIES = 8  # connection errors: back off 0.1, 0.2, 0.4 … 2 s, then give up (scan FAULT)


class StreamReader:
    """Caches one DataStore per Redis URL and one loaded scan per scan key."""

    def __init__(self) -> None:
        self._stores: dict[str, DataStore] = {}
        self._event_streams: dict[tuple[str, str], object] = {}

    def read(self, source: StreamSource, start: int, stop: int) -> np.ndarray:
        delay = 0.1
        for attempt in range(RETRIES + 1):
            try:
                stream = self._event_stream(source)
                rows = stream[start:stop]  # one XRANGE for the whole share
                break
            except IndexNoMoreThereError as e:
                raise RuntimeError(f"rows {start}..{stop - 1} of {source.stream_name} were trimmed from Redis "
                                   "before they were written") from e
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if attempt == RETRIES:
                    raise RuntimeError(f"Redis unreachable after {RETRIES} retries: {e}") from e
                log.warning("Redis read of %s failed (%s), retry in %.1fs", source.stream_name, e, delay)
                self._stores.pop(source.redis_url, None)
                self._event_streams.clear()
                time.sleep(delay)
                delay = min(2 * delay, 2.0)
        if len(rows) != stop - start:
            raise RuntimeError(f"rows {start}..{stop - 1} of {source.stream_name} are not in Redis any more "
                               f"(got {len(rows)}): Redis restarted or the data expired")
        return rows

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
