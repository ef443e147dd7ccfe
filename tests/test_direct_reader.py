"""The writer ranks' direct reader (XRANGE payloads received into the row buffer), on real Redis:
every cut of every batch layout equals what was published and what redis-py/hiredis reads."""
from __future__ import annotations

import numpy as np
import pytest
import redis


def _frame_scan(url: str, name: str, frames: np.ndarray, batches: list[int], extra: int = 0):
    from blissdata.redis_engine.store import DataStore
    from blissdata.streams.default import Stream

    scan = DataStore(url).create_scan({"name": name, "number": 1, "data_policy": "None", "session": "direct"},
                                      info={"name": name})
    stream = scan.create_stream(Stream.make_definition("cam:image", str(frames.dtype), frames.shape[1:]))
    counts = scan.create_stream(Stream.make_definition("diode", "float64", ()))
    scan.prepare()
    scan.start()
    lo = 0
    for n in batches:
        stream.send(frames[lo:lo + n])
        lo += n
    counts.send(np.arange(float(lo)))
    stream.join()
    counts.join()
    return scan


@pytest.mark.parametrize("batches", [[1] * 12, [3, 3, 3, 3], [5, 1, 4, 2], [12]])
def test_direct_reads_equal_published_rows(stack, batches):
    from nxpar.protocol.steps import StreamSource
    from nxpar.sources.redis_reader import StreamReader

    url = stack.env["REDIS_DATA_URL"]
    frames = np.random.default_rng(len(batches)).integers(0, 60000, (12, 64, 48), dtype="uint16")  # 6 KiB rows
    scan = _frame_scan(url, f"direct{len(batches)}{batches[0]}", frames, batches)
    source = StreamSource(url, scan.key, "cam:image")
    direct, hiredis = StreamReader(), StreamReader(direct=False)
    for start, stop in [(0, 12), (4, 8), (1, 2), (3, 6), (11, 12), (5, 12), (0, 1), (2, 11)]:
        got = direct.read(source, start, stop)
        np.testing.assert_array_equal(got, frames[start:stop], err_msg=f"{batches} {start}:{stop}")
        np.testing.assert_array_equal(got, hiredis.read(source, start, stop))
        assert got.base is direct._buffers[(scan.key, "cam:image")]  # received into the row buffer
    assert direct._direct, "the frames went through the direct reader"
    # frames and scalars in one step: big rows direct, small rows through hiredis, both in flight at once
    rows, diode = direct.read_many([(source, 2, 9), (StreamSource(url, scan.key, "diode"), 3, 12)])
    np.testing.assert_array_equal(rows, frames[2:9])
    np.testing.assert_array_equal(diode, np.arange(3.0, 12.0))
    scan.stop()
    scan.close()


def test_direct_reader_after_trim_and_lost_connection(stack):
    """Rows trimmed from Redis: the same clear error as before; a connection Redis closed is
    replaced on the retry and the next read is right (no stale reply read)."""
    from nxpar.protocol.steps import StreamSource
    from nxpar.sources.redis_reader import StreamReader

    url = stack.env["REDIS_DATA_URL"]
    frames = np.arange(10 * 64 * 64, dtype="uint16").reshape(10, 64, 64)
    scan = _frame_scan(url, "direct_trim", frames, [2, 2, 2, 2, 2])
    source = StreamSource(url, scan.key, "cam:image")
    reader = StreamReader()
    np.testing.assert_array_equal(reader.read(source, 0, 10), frames)
    client = redis.Redis.from_url(url)
    (conn,) = reader._direct.values()
    direct_addr = "%s:%d" % conn.sock.getsockname()
    killed = [client.client_kill_filter(_id=c["id"]) for c in client.client_list()
              if c["addr"] == direct_addr]  # Redis drops the direct reader's connection
    assert killed == [1]
    np.testing.assert_array_equal(reader.read(source, 3, 7), frames[3:7])
    key = reader._event_stream(source).key
    client.xtrim(key, minid="6")  # rows 0..5 gone
    with pytest.raises(RuntimeError, match="trimmed|not in Redis"):
        reader.read(source, 0, 4)
    np.testing.assert_array_equal(reader.read(source, 6, 10), frames[6:10])
    scan.stop()
    scan.close()


def test_prefetched_reads_are_collected_in_order(stack):
    """prefetch() sends the next step's reads before the current rows are used: the same requests
    collect them (rows equal), other requests drop them and read afresh (never a stale reply)."""
    from nxpar.protocol.steps import StreamSource
    from nxpar.sources.redis_reader import StreamReader

    url = stack.env["REDIS_DATA_URL"]
    frames = np.random.default_rng(7).integers(0, 60000, (16, 64, 64), dtype="uint16")
    scan = _frame_scan(url, "direct_prefetch", frames, [4, 4, 4, 4])
    source = StreamSource(url, scan.key, "cam:image")
    reader = StreamReader()
    current = reader.read(source, 0, 4)
    reader.prefetch([(source, 4, 8)])
    assert reader._in_flight, "the reads of the next step are on their way"
    np.testing.assert_array_equal(current, frames[0:4])  # the current rows untouched until the next read
    np.testing.assert_array_equal(reader.read(source, 4, 8), frames[4:8])  # collected
    assert not reader._in_flight
    reader.prefetch([(source, 8, 12)])
    np.testing.assert_array_equal(reader.read(source, 10, 16), frames[10:16])  # a different step came
    assert not reader._in_flight
    reader.prefetch([(source, 0, 16)])
    np.testing.assert_array_equal(reader.read(source, 0, 16), frames)
    scan.stop()
    scan.close()

