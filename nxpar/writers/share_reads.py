"""ALL WRITER RANKS: each rank's share of the rows of a WriteBatch, read before the batch's agreement.

Two kinds of sources, two ways to fail:

* Redis rows (`StreamSource`, one pipelined round trip) and Lima frames (`FileFramesSource`): a read
  error fails the whole step on every rank (`StepExecutor._agree`), and the scan FAULTs: the
  scan's data is gone or was reported saved and is not.
* Lima2 / Mosca rows (`PLUGIN_SOURCES`: the detectors' files, the Lima2 receivers' files, the Mosca
  server): a read error fails that write only. The ranks agree on which writes failed (a flag per
  write, in the same reduction as the step's agreement), skip them everywhere and write the others;
  the failed channels go back to rank 0 with a short reason, where they become a warning
  (`RowWrites`, `PluginStreams.write_failed`), never a FAULT.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from mpi4py import MPI

from ..protocol import steps as st
from ..sources.detector_files import read_runs
from ..sources.lima2_receivers import read_pieces
from ..sources.lima_files import read_frames
from ..sources.mosca_server import read_spectra
from ..sources.redis_reader import StreamReader
from . import layout

# sources whose read errors cost one write, not the scan (a warning on rank 0)
PLUGIN_SOURCES = (st.FileRunsSource, st.FileStridedSource, st.MoscaServerSource)
MAX_REASON = 200  # characters of a failed read's reason sent back to rank 0


def redis_reads(writes: list[st.WriteRows], shares: list[tuple[int, int]]) -> list[tuple]:
    """(index, source, lo, hi) of the writes whose share on this rank is read from Redis."""
    return [(i, w.source, lo, hi) for i, (w, (lo, hi)) in enumerate(zip(writes, shares))
            if hi > lo and isinstance(w.source, st.StreamSource)]


def read_shares(reader: StreamReader, writes: list[st.WriteRows], shares: list[tuple[int, int]]
                ) -> tuple[list, dict[int, str]]:
    """LOCAL: this rank's rows of each write (None where its share is empty), shaped as rows, and
    {write index: reason} of the plugin writes it could not read (their rows None).

    Raises for a Redis or Lima read error (the step fails)."""
    redis = redis_reads(writes, shares)
    rows: list = [None] * len(writes)
    for (i, *_), raw in zip(redis, reader.read_many([r[1:] for r in redis])):
        rows[i] = raw
    failed: dict[int, str] = {}
    for i, (w, (lo, hi)) in enumerate(zip(writes, shares)):
        if hi <= lo:
            continue
        if isinstance(w.source, PLUGIN_SOURCES):
            try:
                rows[i] = _shaped(w, lo, hi, _plugin_rows(w, lo, hi))
            except Exception as e:  # a file not closed, a server restarting: this write only
                failed[i] = f"{type(e).__name__}: {e}"[:MAX_REASON]
            continue
        if isinstance(w.source, st.FileFramesSource):
            rows[i] = read_frames(w.source.refs[lo - w.source.first_row:hi - w.source.first_row])
        rows[i] = _shaped(w, lo, hi, rows[i])
    return rows, failed


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
    if raw is None or w.spec.variable:  # variable rows are padded once the ranks agreed on a length
        return raw
    try:
        return layout.as_rows(raw, w.spec)
    except Exception as e:
        raise RuntimeError(f"{w.source.stream_name}[{lo}:{hi}]: {e}") from e


def failure_flags(failed: dict[int, str], nwrites: int) -> list[int]:
    """LOCAL: one flag per write, 1 where this rank could not read its share."""
    return [1 if i in failed else 0 for i in range(nwrites)]


def agreed_failures(comm: MPI.Intracomm, failed: dict[int, str], flags: Sequence[int]) -> dict[int, str]:
    """COLLECTIVE when any agreed flag is set (the flags are the ranks' reduction, the same on every
    rank, so every rank takes the same branch): {write index: reason} of the writes that failed
    on some rank, the reason of the first such rank."""
    if not any(flags):
        return {}
    gathered = comm.allgather(failed)
    return {i: next((g[i] for g in gathered if i in g), "unreadable on a writer rank")
            for i in np.flatnonzero(np.asarray(flags)).tolist()}
