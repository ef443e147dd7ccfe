"""ALL WRITER RANKS: each rank's share of the rows of a WriteBatch, read before the batch's agreement.

Two kinds of sources, two ways to fail:

* Redis rows (`StreamSource`, one pipelined round trip) and Lima frames (`FileFramesSource`): a read
  error fails the whole step on every rank (`StepExecutor._agree`), and the scan FAULTs: the
  scan's data is gone or was reported saved and is not.
* Lima2 / Mosca rows (`PLUGIN_SOURCES`: the detectors' files, the Lima2 receivers' files, the Mosca
  server): a read error fails that write only (UNREADABLE). The ranks agree on which writes failed (a
  flag per write, in the same reduction as the step's agreement), skip them everywhere and write the
  others; the failed channels go back to rank 0 with a short reason, where they become a warning
  (`RowWrites`, `PluginStreams.write_failed`), never a FAULT.
* Rows of any source that are not what their stream declares (payload bytes ≠ points × declared row
  size, a row of another shape: `DeclarationMismatch`) are skipped the same way (MISMATCH), so that the
  scan's other streams are still written; rank 0 FAULTs the scan at its end, naming the channel.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from mpi4py import MPI

from ..protocol import steps as st
from ..sources.detector_files import read_runs
from ..sources.lima2_receivers import read_pieces
from ..sources.lima_files import read_frames
from ..sources.mosca_server import read_spectra
from ..sources.redis_reader import StreamReader
from ..sources.resp_reader import DeclarationMismatch
from . import layout
from .agreement import agree

# sources whose read errors cost one write, not the scan (a warning on rank 0)
PLUGIN_SOURCES = (st.FileRunsSource, st.FileStridedSource, st.MoscaServerSource)
MAX_REASON = 200  # characters of a failed read's reason sent back to rank 0


def redis_reads(writes: list[st.WriteRows], shares: list[tuple[int, int]]) -> list[tuple]:
    """(index, source, lo, hi) of the writes whose share on this rank is read from Redis."""
    return [(i, w.source, lo, hi) for i, (w, (lo, hi)) in enumerate(zip(writes, shares))
            if hi > lo and isinstance(w.source, st.StreamSource)]


def read_shares(reader: StreamReader, writes: list[st.WriteRows], shares: list[tuple[int, int]]
                ) -> tuple[list, dict[int, st.ChannelFailure]]:
    """LOCAL: this rank's rows of each write (None where its share is empty), shaped as rows, and
    {write index: failure} of the writes it must skip (their rows None): plugin writes it could not
    read (UNREADABLE), rows that are not what their stream declares (MISMATCH).

    Raises for a Redis or Lima read error (the step fails)."""
    redis = redis_reads(writes, shares)
    rows: list = [None] * len(writes)
    for (i, *_), raw in zip(redis, reader.read_many([r[1:] for r in redis])):
        rows[i] = raw
    failed: dict[int, st.ChannelFailure] = {}
    for i, (w, (lo, hi)) in enumerate(zip(writes, shares)):
        if hi <= lo:
            continue
        try:
            rows[i] = _read_one(w, lo, hi, rows[i])
        except DeclarationMismatch as e:
            e.stream = w.source.stream_name
            failed[i], rows[i] = st.ChannelFailure(st.FailureKind.MISMATCH, str(e)[:MAX_REASON]), None
        except Exception as e:
            if not isinstance(w.source, PLUGIN_SOURCES):
                raise
            # a file not closed, a server restarting: this write only
            failed[i] = st.ChannelFailure(st.FailureKind.UNREADABLE, f"{type(e).__name__}: {e}"[:MAX_REASON])
    return rows, failed


def _read_one(w: st.WriteRows, lo: int, hi: int, redis_rows: Any) -> Any:
    """This rank's rows [lo, hi) of one write, shaped (Redis rows already read)."""
    if isinstance(redis_rows, DeclarationMismatch):
        raise redis_rows
    if isinstance(w.source, PLUGIN_SOURCES):
        return _shaped(w, lo, hi, _plugin_rows(w, lo, hi))
    if isinstance(w.source, st.FileFramesSource):
        redis_rows = read_frames(w.source.refs[lo - w.source.first_row:hi - w.source.first_row])
    return _shaped(w, lo, hi, redis_rows)


def _plugin_rows(w: st.WriteRows, lo: int, hi: int) -> Any:
    """Rows [lo, hi) of a Lima2 / Mosca source."""
    s = w.source
    if isinstance(s, st.FileRunsSource):  # Lima2 master file / Mosca files
        return read_runs(s.runs, s.first_row, lo, hi)
    if isinstance(s, st.FileStridedSource):  # Lima2 receivers' files
        return read_pieces(s.pieces, lo, hi, s.row_shape, w.spec.dtype)
    assert isinstance(s, st.MoscaServerSource)  # spectra Mosca does not save
    return read_spectra(s.server_url, s.acq_id, s.detector, lo, hi)


def _shaped(w: st.WriteRows, lo: int, hi: int, raw: Any) -> Any:
    if raw is None:
        return raw
    if w.spec.variable:  # variable rows are padded once the ranks agreed on a length; their fixed dims checked now
        try:
            layout.check_variable_rows(raw, w.spec)
        except ValueError as e:
            raise DeclarationMismatch.undecodable(w.source.stream_name, lo, w.spec.dtype, w.spec.detector_shape,
                                                  e) from e
        return raw
    try:
        return layout.as_rows(raw, w.spec)
    except ValueError as e:
        raise DeclarationMismatch.undecodable(w.source.stream_name, lo, w.spec.dtype, w.spec.detector_shape, e) from e


def failure_flags(failed: dict[int, st.ChannelFailure], nwrites: int) -> list[int]:
    """LOCAL: one flag per write, 1 where this rank could not read its share."""
    return [1 if i in failed else 0 for i in range(nwrites)]


def agreed_failures(comm: MPI.Intracomm, failed: dict[int, st.ChannelFailure], flags: Sequence[int]
                    ) -> dict[int, st.ChannelFailure]:
    """COLLECTIVE when any agreed flag is set (the flags are the ranks' reduction, the same on every
    rank, so every rank takes the same branch): {write index: reason} of the writes that failed
    on some rank, the reason of the first such rank."""
    if not any(flags):
        return {}
    gathered = comm.allgather(failed)
    unknown = st.ChannelFailure(st.FailureKind.UNREADABLE, "unreadable on a writer rank")
    return {i: next((g[i] for g in gathered if i in g), unknown)
            for i in np.flatnonzero(np.asarray(flags)).tolist()}


def read_and_agree(comm: MPI.Intracomm, reader: StreamReader, writes: list[st.WriteRows],
                   shares: list[tuple[int, int]], given_up: dict[str, st.ChannelFailure],
                   local_error: Callable[[], str], prefetch_next: Callable[[], None]) -> list:
    """COLLECTIVE: this rank's rows of each write (`read_shares`), then the one agreement of the batch:
    StepFailed on every rank if a rank could not read (or `local_error()` — asked only when the reads
    went well — says why it cannot go on); the writes some rank could not read join `given_up`
    ({stream: failure}, the same on every rank). `prefetch_next()` runs between the reads and the
    agreement (LOCAL, best effort)."""
    error, rows, failed = "", [None] * len(writes), {}
    try:
        rows, failed = read_shares(reader, writes, shares)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    prefetch_next()
    flags = agree(comm, error or local_error(), failure_flags(failed, len(writes)))
    for i, failure in agreed_failures(comm, failed, flags).items():
        given_up.setdefault(writes[i].source.stream_name, failure)
    return rows
