"""The direct reader's RESP2 parsing, fed byte by byte and in odd cuts over a socket pair (pure protocol:
what real Redis sends is checked in tests/test_direct_reader.py)."""
from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
import redis

from nxpar.sources import resp_reader as rr


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def _entry(first_row: int, payload: bytes, nrows: int | None = None) -> bytes:
    fields = [_bulk(b"payload"), _bulk(payload)] + ([_bulk(b"len"), _bulk(str(nrows).encode())] if nrows else [])
    return b"*2\r\n" + _bulk(f"{first_row}-0".encode()) + b"*%d\r\n" % len(fields) + b"".join(fields)


def _connection(wire: bytes, cut: int) -> rr.RespConnection:
    """A RespConnection whose server sends `wire` in pieces of `cut` bytes."""
    ours, theirs = socket.socketpair()

    def serve() -> None:
        for i in range(0, len(wire), cut):
            theirs.sendall(wire[i:i + cut])
        theirs.close()

    threading.Thread(target=serve, daemon=True).start()
    conn = rr.RespConnection.__new__(rr.RespConnection)
    conn.sock = ours
    conn._buf, conn._lo, conn._hi = bytearray(rr.RECV_CHUNK), 0, 0
    conn._view = memoryview(conn._buf)
    return conn


@pytest.mark.parametrize("cut", [1, 7, 4096, 1 << 20])
def test_rows_land_in_place_whatever_the_cuts(cut):
    rows = np.arange(10 * 4096, dtype="uint16").reshape(10, 4096)  # 8 KiB rows: offered to the sink
    # the entry holding start (rows 2..4, start = 3), two inside, one running past stop = 9 (rows 8..9)
    wire = (b"*1\r\n" + _entry(2, rows[2:5].tobytes(), 3)
            + b"*2\r\n" + _entry(5, rows[5:8].tobytes(), 3) + _entry(8, rows[8:10].tobytes(), 2))
    conn = _connection(wire, cut)
    out = np.zeros((6, 4096), dtype="uint16")
    placer = rr.RowPlacer(out, 3, 9)
    got = placer.rows(conn.read_entries(placer.sink) + conn.read_entries(placer.sink))
    np.testing.assert_array_equal(got, rows[3:9])
    assert got.base is out or got.base is out.base


def test_a_gap_stops_the_rows_and_an_error_reply_raises_as_redis_py():
    rows = np.arange(6 * 4096, dtype="uint16").reshape(6, 4096)
    wire = b"*1\r\n" + _entry(0, rows[0:2].tobytes(), 2) + b"*1\r\n" + _entry(3, rows[3:6].tobytes(), 3)
    wire += b"-LOADING Redis is loading the dataset in memory\r\n"
    conn = _connection(wire, 1000)
    out = np.zeros((6, 4096), dtype="uint16")
    placer = rr.RowPlacer(out, 0, 6)
    got = placer.rows(conn.read_entries(placer.sink) + conn.read_entries(placer.sink))
    np.testing.assert_array_equal(got, rows[0:2])  # row 2 missing: the rows stop there
    with pytest.raises(redis.BusyLoadingError):  # retried by call_with_backoff like any ConnectionError
        conn.read_entries(placer.sink)


def test_trimmed_start_gives_none_and_small_rows_are_copied():
    rows = np.arange(8, dtype="float64")  # 8-byte rows: never offered to the sink
    wire = b"*1\r\n" + _entry(0, rows[0:1].tobytes()) + b"*2\r\n" + _entry(4, rows[4:6].tobytes(), 2)
    wire += _entry(6, rows[6:8].tobytes(), 2)
    conn = _connection(wire, 3)
    placer = rr.RowPlacer(np.zeros(5), 3, 8)
    assert placer.rows(conn.read_entries(placer.sink) + conn.read_entries(placer.sink)) is None  # row 3 gone
    conn = _connection(b"*1\r\n" + _entry(4, rows[4:6].tobytes(), 2) + b"*0\r\n", 5)
    placer = rr.RowPlacer(np.zeros(2), 4, 6)
    np.testing.assert_array_equal(placer.rows(conn.read_entries(placer.sink) + conn.read_entries(placer.sink)),
                                  rows[4:6])


def test_values_and_lines_longer_than_the_buffer_and_a_null_bulk():
    big = b"x" * (2 * rr.RECV_CHUNK + 3)
    fields = _bulk(b"note") + _bulk(big)  # a field larger than the parser buffer, received apart
    conn = _connection(b"*1\r\n*2\r\n" + _bulk(b"7-0") + b"*2\r\n" + fields + b"+" + big + b"\r\n", 999)
    (entry,) = conn.read_entries(lambda *_: None)
    assert entry.first_row == 7 and entry.fields[b"note"] == big
    assert conn.read_simple() == big  # a line longer than the buffer: the buffer grows
    conn = _connection(b"*1\r\n*2\r\n$-1\r\n*0\r\n", 4)
    with pytest.raises(redis.ConnectionError, match="null bulk"):
        conn.read_entries(lambda *_: None)
