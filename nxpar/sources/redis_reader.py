"""ALL WRITER RANKS: read a rank's own share of a stream straight from Redis (no funnel via rank 0)."""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import redis
from blissdata.exceptions import IndexNoMoreThereError
from blissdata.redis_engine.store import DataStore

from ..protocol.steps import StreamSource
from ..util.retry import call_with_backoff
from .blissdata_raw import data_entries, fixed_numeric, redis_of
from .lima2_conductor import bound_lima2_handshakes
from .resp_reader import DIRECT_MIN_BYTES, DeclarationMismatch, EntryPayload, RespConnection, RowPlacer

# Writer ranks load scans too (their streams): a hung Lima2 conductor must cost them the same bounded wait
# as rank 0, not a hang (blissdata's plugin builds every stream of a scan it loads).
bound_lima2_handshakes()

RETRY_FOR_S = 10.0  # connection errors: back off for this long, then give up (scan FAULT)


class StreamReader:
    """Caches one DataStore per Redis URL and one loaded scan per scan key.

    Fixed-shape numeric streams are decoded straight into a buffer kept per stream (one copy of
    each row, into memory that is already mapped); other streams go through blissdata's decoder.
    All fixed-shape reads of a step go to Redis in one pipelined round trip. The rows returned
    are valid until the next read of the same stream.
    """

    def __init__(self, direct: bool | None = None) -> None:
        self._stores: dict[str, DataStore] = {}
        self._event_streams: dict[tuple[str, str], object] = {}
        self._buffers: dict[tuple[str, str], np.ndarray] = {}
        self._direct: dict[tuple, RespConnection] = {}
        self._in_flight: list[tuple[tuple, dict[int, RowPlacer]]] = []  # sent by prefetch(), replies unread
        # big rows through RespConnection; NXPAR_DIRECT_READS=0: all through redis-py/hiredis (A/B, troubleshooting)
        self.direct = os.environ.get("NXPAR_DIRECT_READS", "1") != "0" if direct is None else direct

    def read(self, source: StreamSource, start: int, stop: int) -> np.ndarray:
        return self.read_many([(source, start, stop)])[0]

    def read_many(self, requests: list[tuple[StreamSource, int, int]]) -> list[np.ndarray | DeclarationMismatch]:
        """Rows [start, stop) of each source, retried with back-off on connection errors.
        One request per stream: the rows of a stream land in its one buffer. A request whose rows are
        not what its stream declares gets a DeclarationMismatch in place of its rows."""
        if not requests:
            return []
        if len({(s.scan_key, s.stream_name) for s, _, _ in requests}) != len(requests):
            raise ValueError("one read may ask for each stream once (its rows share one buffer)")
        try:
            results = call_with_backoff(lambda: self._read_all(requests), "reading streams", RETRY_FOR_S,
                                        self._reconnect)
        except IndexNoMoreThereError as e:
            raise RuntimeError(f"rows were trimmed from Redis before they were written: {e}") from e
        for (source, start, stop), rows in zip(requests, results):
            if isinstance(rows, DeclarationMismatch):
                continue  # this request's rows are refused; the caller decides (the others are good)
            if len(rows) != stop - start:
                raise RuntimeError(f"rows {start}..{stop - 1} of {source.stream_name} are not in Redis any more "
                                   f"(got {len(rows)}): Redis restarted or the data expired")
        return results

    def prefetch(self, requests: list[tuple[StreamSource, int, int]]) -> None:
        """Send the reads of the next step now, so Redis builds and sends its replies while this rank
        compresses and writes the current one; `read_many` with the same requests collects them.
        Safe for the rows of the current step: nothing is written into a row buffer before that
        `read_many`. Best effort: any error here is left for the real read to meet (and retry)."""
        if not self.direct or not requests:
            return
        try:
            streams = [self._event_stream(source) for source, _, _ in requests]
            placers = self._send_direct(requests, streams, self._big(streams))
            if placers:
                self._in_flight.append((_request_key(requests), placers))
        except Exception:
            self._drop_direct()

    def _big(self, streams: list) -> list[int]:
        if not self.direct:
            return []
        return [i for i, s in enumerate(streams)
                if fixed_numeric(s) and _row_nbytes(s) >= DIRECT_MIN_BYTES and _plain_connection(s)]

    def _read_all(self, requests: list[tuple[StreamSource, int, int]]) -> list[np.ndarray]:
        """Big rows (frames, long spectra) through the direct reader, small fixed-shape rows through
        one hiredis pipeline (its C parser is faster for many small entries), both sent before
        either is read; anything else (variable shapes, other encodings, trimmed data) through
        blissdata's decoder."""
        streams = [self._event_stream(source) for source, _, _ in requests]
        try:
            placers = self._take_in_flight(requests)
            if placers is None:
                placers = self._send_direct(requests, streams, self._big(streams))
            small = [i for i, s in enumerate(streams) if fixed_numeric(s) and i not in placers]
            return self._read_split(requests, streams, placers, small)
        except BaseException:
            self._drop_direct()  # replies may be left unread on them
            raise

    def _take_in_flight(self, requests: list[tuple[StreamSource, int, int]]) -> dict[int, RowPlacer] | None:
        """The placers of these requests if prefetch() sent them; other unread replies are dropped
        with their connections (they would be read in place of ours)."""
        if not self._in_flight:
            return None
        key, placers = self._in_flight.pop(0)
        if key == _request_key(requests) and not self._in_flight:
            return placers
        self._drop_direct()
        return None

    def _read_split(self, requests: list[tuple[StreamSource, int, int]], streams: list,
                    placers: dict[int, RowPlacer], small: list[int]) -> list:
        """Small rows through one hiredis pipeline while the direct replies wait on their socket,
        then the direct replies, then blissdata's decoder for whatever neither could place."""
        results: list = [None] * len(requests)
        if small:
            pipe = redis_of(streams[small[0]]).pipeline(transaction=False)
            for i in small:  # the batch holding `start`, then the batches after it
                _, start, stop = requests[i]
                pipe.xrevrange(streams[i].key, max=start, count=1)
                pipe.xrange(streams[i].key, min=start + 1, max=stop - 1)  # empty when stop - 1 < start + 1
            replies = pipe.execute()
            for n, i in enumerate(small):
                raw = replies[2 * n] + replies[2 * n + 1]
                results[i] = _checked(requests[i], lambda: self._decode_into_buffer(requests[i], streams[i], raw))
        for i, placer in placers.items():
            conn = self._direct_connection(streams[i])
            entries = conn.read_entries(placer.sink) + conn.read_entries(placer.sink)
            results[i] = _checked(requests[i], lambda: placer.rows(entries))
        for i, (source, start, stop) in enumerate(requests):
            if results[i] is None:  # variable shapes, other encodings, trimmed data: blissdata decodes
                results[i] = _decoded(source, streams[i], start, stop)
        return results

    def _send_direct(self, requests: list[tuple[StreamSource, int, int]], streams: list, big: list[int]
                     ) -> dict[int, RowPlacer]:
        """Send the XREVRANGE/XRANGE pair of every big-row request (one pipeline per Redis)."""
        placers: dict[int, RowPlacer] = {}
        by_connection: dict[int, tuple[RespConnection, list]] = {}
        for i in big:
            source, start, stop = requests[i]
            placers[i] = RowPlacer(self._buffer(source, streams[i], stop - start), start, stop)
            conn = self._direct_connection(streams[i])
            by_connection.setdefault(id(conn), (conn, []))[1].extend([
                ("XREVRANGE", streams[i].key, start, "-", "COUNT", 1),
                ("XRANGE", streams[i].key, start + 1, stop - 1)])
        for conn, commands in by_connection.values():
            conn.send(commands)
        return placers

    def _direct_connection(self, stream) -> RespConnection:
        """One plain connection per Redis server (db included), made from the data store's settings."""
        kwargs = redis_of(stream).connection_pool.connection_kwargs
        key = (kwargs.get("path"), kwargs.get("host"), kwargs.get("port"), kwargs.get("db"))
        conn = self._direct.get(key)
        if conn is None:
            conn = self._direct[key] = RespConnection(kwargs)
        return conn

    def _buffer(self, source: StreamSource, stream, nrows: int) -> np.ndarray:
        """The stream's row buffer, at least `nrows` long (kept between reads)."""
        shape, dtype = tuple(stream.shape), np.dtype(stream.dtype)
        key = (source.scan_key, source.stream_name)
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < nrows or buf.shape[1:] != shape or buf.dtype != dtype:
            buf = self._buffers[key] = np.empty((nrows,) + shape, dtype=dtype)
        return buf[:nrows]

    def _decode_into_buffer(self, request: tuple[StreamSource, int, int], stream, raw: list) -> np.ndarray | None:
        """hiredis' entries copied into the stream's buffer by the direct reader's rules (RowPlacer);
        None when [start, ...) is not there (trimmed), so that blissdata's decoder raises the right error."""
        source, start, stop = request
        placer = RowPlacer(self._buffer(source, stream, stop - start), start, stop)
        return placer.rows([EntryPayload(e.id, {b"len": b"%d" % e.length}, len(e.batch.payload), e.batch.payload)
                            for e in data_entries(raw)])

    def _drop_direct(self) -> None:
        for conn in self._direct.values():
            conn.close()
        self._direct.clear()
        self._in_flight.clear()

    def _reconnect(self) -> None:
        self._drop_direct()
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


def _checked(request: tuple[StreamSource, int, int], rows: Callable[[], Any]) -> Any:
    """rows(), or the DeclarationMismatch it raised, naming the request's stream."""
    try:
        return rows()
    except DeclarationMismatch as e:
        e.stream = request[0].stream_name
        return e


def _decoded(source: StreamSource, stream, start: int, stop: int) -> Any:
    """Rows through blissdata's own decoder; payloads it cannot decode as declared are a mismatch."""
    try:
        return stream[start:stop]
    except (ValueError, TypeError) as e:
        return DeclarationMismatch.undecodable(source.stream_name, start, stream.dtype, tuple(stream.shape), e)


def _row_nbytes(stream) -> int:
    return int(np.prod(stream.shape, dtype=int)) * np.dtype(stream.dtype).itemsize


def _request_key(requests: list[tuple[StreamSource, int, int]]) -> tuple:
    return tuple((source.scan_key, source.stream_name, start, stop) for source, start, stop in requests)


def _plain_connection(stream) -> bool:
    """The direct reader speaks plain RESP2 over TCP or a Unix socket; TLS and anything else a
    deployment configured on its data store keeps going through redis-py."""
    pool = redis_of(stream).connection_pool
    return pool.connection_class in (redis.Connection, redis.UnixDomainSocketConnection) and \
        pool.connection_kwargs.get("protocol") not in (3, "3")
