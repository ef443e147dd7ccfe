"""Who does what in the MPI job.

    rank 0            Tango front end; plans files; the only rank that talks Tango
    ranks 1..N-1      writers: read their share from Redis and compress it; the first of them (the
                      storing rank) stores every rank's chunks in the file (or all write it through MPI-IO)
    N == 1            rank 0 is also the only writer

`writer_comm()` is COLLECTIVE over COMM_WORLD and must be called once by every rank at start-up.
"""
from __future__ import annotations

from mpi4py import MPI

STEP_TAG = 11
RESULT_TAG = 12
PROGRESS_TAG = 13  # ProgressMark: writer ranks → rank 0, never waited for
# on the writer communicator, the storing path (writers/storing/): the storing rank's plan of a WriteBatch
# to every other writer rank, and each one's compressed chunks and raw rows back (a header, then buffers)
PLAN_TAG = 14
BUNDLE_TAG = 15
BUNDLE_DATA_TAG = 16
# Waiting ranks sleep between probes instead of spinning in MPI. Each probe runs MPICH's progress
# engine, which is not free: the sleep grows by POLL_GROWTH per probe from POLL_MIN_S to POLL_MAX_S
# while nothing comes. The slow growth keeps sleeps under 0.5 ms for the first ~20 ms of a wait (the
# steps at a scan's end follow each other within a few ms: doubling to 2 ms at once cost real-BLISS
# scans ~20 ms each), and a long wait still costs ~500 probes/s (2 ms sleeps after ~100 ms); idle,
# ~3 % of a core per rank (0.5 ms sleeps throughout would cost ~6 %).
POLL_MIN_S = 0.0001
POLL_MAX_S = 0.002
POLL_GROWTH = 1.02
# A rank whose own compression thread is busy (a batch's parts being encoded) polls for the others'
# parts and its sends' progress: there a probe takes CPU from its own encoding (in a slice of a core,
# ~0.1 ms per wake-up is several % of the quota at 2 ms), and a part arrives every few hundred ms, so
# the sleep grows on to WORKING_POLL_MAX_S.
WORKING_POLL_MAX_S = 0.01


def next_sleep(sleep_s: float, cap_s: float = POLL_MAX_S) -> float:
    """The sleep after `sleep_s` (grown, capped at `cap_s`)."""
    return min(sleep_s * POLL_GROWTH, cap_s)


def backoff(sleep_s: float) -> float:
    """Sleep, then return the next sleep."""
    import time

    time.sleep(sleep_s)
    return next_sleep(sleep_s)


def writer_comm() -> MPI.Intracomm | None:
    """COLLECTIVE: the communicator of the writer ranks (None on rank 0 when N > 1)."""
    comm = MPI.COMM_WORLD
    if comm.size == 1:
        return MPI.COMM_SELF
    color = MPI.UNDEFINED if comm.rank == 0 else 1
    sub = comm.Split(color, comm.rank)
    return None if sub == MPI.COMM_NULL else sub


def wait_for_message(comm: MPI.Intracomm, source: int, tag: int, stop=lambda: False) -> bool:
    """Sleep-poll for a message (MPICH's blocking receive spins a core; we share 2 cores)."""
    sleep_s = POLL_MIN_S
    while not comm.Iprobe(source=source, tag=tag):
        if stop():
            return False
        sleep_s = backoff(sleep_s)
    return True


class CollectiveTimeout(RuntimeError):
    """Other ranks did not reach the agreement: they are stuck (e.g. inside an HDF5 collective)."""


def sleepy_allreduce_max(comm: MPI.Intracomm, value: int, timeout: float | None = None) -> int:
    """COLLECTIVE: max of `value` over `comm`, sleep-polled (ranks done early give the CPU to the others)."""
    return sleepy_allreduce_max_all(comm, [value], timeout)[0]


def sleepy_allreduce_max_all(comm: MPI.Intracomm, values: list[int], timeout: float | None = None) -> list[int]:
    """COLLECTIVE: element-wise max of `values` (the same length on every rank) over `comm`, sleep-polled."""
    import time

    import numpy as np

    send = np.array(values, dtype=np.int64)
    recv = np.zeros(len(values), dtype=np.int64)
    req = comm.Iallreduce(send, recv, op=MPI.MAX)
    deadline = None if timeout is None else time.monotonic() + timeout
    sleep_s = POLL_MIN_S
    while not req.Test():
        if deadline is not None and time.monotonic() > deadline:
            raise CollectiveTimeout(f"the other ranks did not answer within {timeout:.0f} s")
        sleep_s = backoff(sleep_s)
    return [int(v) for v in recv]
