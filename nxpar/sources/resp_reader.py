"""ALL WRITER RANKS: XRANGE replies of fixed-shape numeric streams parsed straight into the rows' buffer.

Why: a live 2D scan is read from Redis as fast as BLISS publishes it, on the same cores. Through
redis-py + hiredis every frame is copied three times after the kernel (socket buffer → parser buffer
→ a bytes object → the row buffer) and each reply is parsed into Python objects. Here the payload
bytes of each entry go from the socket into their place in the row buffer (`socket.recv_into`), and
only the small parts of the reply (ids, field names) become Python objects.

Only what the writer ranks need: pipelined XRANGE/XREVRANGE over one plain connection per Redis
(TCP or Unix socket; AUTH and SELECT as the URL says). Protocol or connection errors are raised as
redis-py's exceptions, so `call_with_backoff` retries them as for any other Redis call.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import redis

RECV_CHUNK = 1 << 16  # the parser's own buffer: headers and small values only
DIRECT_MIN_BYTES = 4096  # bulk strings at least this long are offered to the sink
SEAL_ID = 2**64 - 1  # blissdata seals a stream with an entry at the largest id (its _MAX_STREAM_ID)


@dataclass
class EntryPayload:
    """One stream entry of a reply: first row index, field values, and where its payload went."""

    first_row: int
    fields: dict[bytes, bytes] = field(default_factory=dict)
    payload_len: int = 0
    payload: bytes | bytearray | None = None  # set when the sink declined the payload (not received in place)


# sink(first_row, payload_nbytes) -> where to receive the payload (a writable memoryview), or None
PayloadSink = Callable[[int, int], "memoryview | None"]


def _command(*args: Any) -> bytes:
    """One command in RESP2 (an array of bulk strings), as any Redis client sends it."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def _error(line: bytes) -> redis.RedisError:
    """An error reply as redis-py's exception (so LOADING etc. are retried like any other read)."""
    from redis._parsers.base import BaseParser

    return BaseParser.parse_error(line[1:].decode(errors="replace"))


class RespConnection:
    """One blocking connection; send a pipeline, then read its replies in order."""

    def __init__(self, connection_kwargs: dict[str, Any], timeout_s: float = 30.0) -> None:
        path = connection_kwargs.get("path")
        try:
            if path:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout_s)
                self.sock.connect(path)
            else:
                self.sock = socket.create_connection((connection_kwargs.get("host", "localhost"),
                                                      int(connection_kwargs.get("port", 6379))), timeout_s)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            raise redis.ConnectionError(f"cannot connect to Redis ({e})") from e
        self._buf = bytearray(RECV_CHUNK)
        self._view = memoryview(self._buf)
        self._lo = self._hi = 0
        try:
            self._hello(connection_kwargs)
        except BaseException:
            self.close()
            raise

    def _hello(self, kw: dict[str, Any]) -> None:
        setup = []
        if kw.get("password"):
            setup.append(("AUTH", kw["username"], kw["password"]) if kw.get("username") else ("AUTH", kw["password"]))
        if kw.get("db"):
            setup.append(("SELECT", kw["db"]))
        if setup:
            self.send(setup)
            for _ in setup:
                self.read_simple()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- writing -----------------------------------------------------------------------------------
    def send(self, commands: list[tuple[Any, ...]]) -> None:
        try:
            self.sock.sendall(b"".join(_command(*c) for c in commands))
        except OSError as e:
            raise redis.ConnectionError(f"Redis connection lost while sending ({e})") from e

    # -- low-level reading -------------------------------------------------------------------------
    def _recv_into(self, view: memoryview) -> int:
        try:
            n = self.sock.recv_into(view)
        except OSError as e:
            raise redis.ConnectionError(f"Redis connection lost while reading ({e})") from e
        if not n:
            raise redis.ConnectionError("Redis closed the connection")
        return n

    def _fill(self) -> None:
        """More bytes into the parser buffer (kept bytes moved to its start first; a buffer full of
        one unfinished header grows)."""
        if self._lo == self._hi:
            self._lo = self._hi = 0
        elif self._hi == len(self._buf) and self._lo > 0:
            kept = self._hi - self._lo
            self._buf[:kept] = self._buf[self._lo:self._hi]
            self._lo, self._hi = 0, kept
        elif self._hi == len(self._buf):
            grown = bytearray(2 * len(self._buf))
            grown[:self._hi] = self._buf
            self._buf, self._view = grown, memoryview(grown)
        self._hi += self._recv_into(self._view[self._hi:])

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n", self._lo, self._hi)
            if end >= 0:
                line = bytes(self._buf[self._lo:end])
                self._lo = end + 2
                return line
            self._fill()

    def _skip_crlf(self) -> None:
        while self._hi - self._lo < 2:
            self._fill()
        self._lo += 2

    def _bulk_into(self, n: int, out: memoryview) -> None:
        """n bytes of a bulk string into `out`: what the parser buffer holds, then straight from the socket."""
        have = min(self._hi - self._lo, n)
        out[:have] = self._view[self._lo:self._lo + have]
        self._lo += have
        while have < n:
            have += self._recv_into(out[have:n])
        self._skip_crlf()

    def _small_bulk(self, n: int) -> bytes | bytearray:
        """A bulk string of n bytes as an object (ids, field names, payloads the sink declined)."""
        if n < 0:
            raise redis.ConnectionError("unexpected null bulk string in a stream entry")
        if n + 2 > len(self._buf):  # larger than the parser buffer: received apart
            out = bytearray(n)
            self._bulk_into(n, memoryview(out))
            return out
        while self._hi - self._lo < n + 2:
            if self._lo + n + 2 > len(self._buf):  # no room after what is kept: move it to the start
                kept = self._hi - self._lo
                self._buf[:kept] = self._buf[self._lo:self._hi]
                self._lo, self._hi = 0, kept
            self._fill()
        value = bytes(self._buf[self._lo:self._lo + n])
        self._lo += n + 2
        return value

    def _header(self, kind: bytes) -> int:
        """The length in an array/bulk header; an error reply raises as redis-py would raise it."""
        line = self._line()
        if line[:1] == b"-":
            raise _error(line)
        if line[:1] != kind:
            raise redis.ConnectionError(f"unexpected Redis reply {line[:40]!r} (expected {kind!r})")
        return int(line[1:])

    # -- replies -----------------------------------------------------------------------------------
    def read_simple(self) -> bytes:
        """A status/integer/bulk reply (AUTH, SELECT, ...)."""
        line = self._line()
        if line[:1] == b"-":
            raise _error(line)
        if line[:1] == b"$":
            n = int(line[1:])
            return b"" if n < 0 else self._small_bulk(n)
        return line[1:]

    def read_entries(self, sink: PayloadSink) -> list[EntryPayload]:
        """One XRANGE/XREVRANGE reply; each entry's `payload` field is received where `sink` says."""
        count = self._header(b"*")
        return [self._entry(sink) for _ in range(max(count, 0))]

    def _entry(self, sink: PayloadSink) -> EntryPayload:
        """[id, [field, value, ...]]: the payload value offered to the sink, the others kept."""
        if self._header(b"*") != 2:
            raise redis.ConnectionError("malformed stream entry in a Redis reply")
        entry_id = self._small_bulk(self._header(b"$"))
        entry = EntryPayload(int(entry_id.split(b"-")[0]))
        nfields = self._header(b"*")
        for _ in range(nfields // 2):
            name = self._small_bulk(self._header(b"$"))
            n = self._header(b"$")
            target = sink(entry.first_row, n) if name == b"payload" and n >= DIRECT_MIN_BYTES else None
            if target is not None:
                self._bulk_into(n, target)
                entry.payload_len = n
            else:
                value = self._small_bulk(n) if n >= 0 else b""
                if name == b"payload":
                    entry.payload, entry.payload_len = value, n
                else:
                    entry.fields[name] = value
        return entry


class DeclarationMismatch(ValueError):
    """Redis holds rows of a stream whose size is not what the stream declares (dtype × shape): they are
    never written as if they were (a wrong dtype, a bigger or smaller frame)."""

    def __init__(self, first_row: int, points: int, payload_len: int, dtype: Any, shape: tuple[int, ...],
                 stream: str = "") -> None:
        super().__init__(first_row, points, payload_len, dtype, shape, stream)
        self.first_row, self.points, self.payload_len = first_row, points, payload_len
        self.dtype, self.shape, self.stream = np.dtype(dtype), tuple(shape), stream

    @classmethod
    def undecodable(cls, stream: str, start: int, dtype: Any, shape: tuple[int, ...], error: Exception
                    ) -> "DeclarationMismatch":
        """Rows blissdata's own decoder refuses for the declared dtype and shape (variable shapes)."""
        out = cls(start, 0, 0, dtype, shape, stream)
        out.detail = f"rows from {start} do not decode as declared {out.dtype.name} {out.shape} ({error}): not written"
        return out

    detail = ""

    def __str__(self) -> str:
        if self.detail:
            return f"{self.stream or 'stream'}: {self.detail}"
        row_nbytes = self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64))
        per_point = f"{self.payload_len / self.points:g} bytes a point" if self.points > 0 else "no point"
        return (f"{self.stream or 'stream'}: declared {self.dtype.name} {self.shape} ({row_nbytes} bytes a point), "
                f"but Redis holds {self.payload_len} bytes for {self.points} point(s) from row {self.first_row} "
                f"({per_point}): not written")


class RowPlacer:
    """Where the payloads of one request [start, stop) go: row r at `out[r - start]`.

    Entries that lie wholly inside are received in place; the one holding `start` (it may begin
    before it) and one running past `stop` arrive apart and their rows are copied. Every entry's payload
    must be its number of points × the declared row size, else DeclarationMismatch. `rows()` is None
    when the entries do not cover `start` contiguously (trimmed data: blissdata's decoder then
    raises the right error)."""

    def __init__(self, out: Any, start: int, stop: int) -> None:
        self.out, self.start, self.stop = out, start, stop
        self.row_nbytes = out.itemsize * int(np.prod(out.shape[1:], dtype=np.int64))
        self._bytes = memoryview(out.reshape(-1).view("uint8")) if self.row_nbytes else None

    def sink(self, first_row: int, nbytes: int) -> memoryview | None:
        """Where an entry's payload goes if it lies wholly in [start, stop) (None: received apart)."""
        if not self.row_nbytes or nbytes % self.row_nbytes:
            return None
        lo, hi = first_row - self.start, first_row - self.start + nbytes // self.row_nbytes
        if lo < 0 or hi > self.stop - self.start:
            return None
        return self._bytes[lo * self.row_nbytes:hi * self.row_nbytes]

    def rows(self, entries: list[EntryPayload]) -> Any:
        filled = self.start  # rows [start, filled) are in `out`
        for e in sorted((e for e in entries if e.first_row < SEAL_ID), key=lambda e: e.first_row):
            nrows = int(e.fields.get(b"len", 1))
            if e.payload_len != nrows * self.row_nbytes:
                raise DeclarationMismatch(e.first_row, nrows, e.payload_len, self.out.dtype, self.out.shape[1:])
            if e.first_row > filled:
                break  # a gap: rows missing from Redis
            if e.first_row + nrows <= filled:
                continue
            hi = min(e.first_row + nrows, self.stop)
            if e.payload is not None:  # received apart: copy the rows that belong to [start, stop)
                batch = np.frombuffer(e.payload, dtype=self.out.dtype).reshape((nrows,) + self.out.shape[1:])
                self.out[filled - self.start:hi - self.start] = batch[filled - e.first_row:hi - e.first_row]
            filled = hi
            if filled >= self.stop:
                break
        if filled == self.start and self.stop > self.start:
            return None
        return self.out[:filled - self.start]
