"""ALL WRITER RANKS (storing path): the plan and the parts of a WriteBatch over MPI point-to-point.

The storing rank sends its plan (small, pickled) to every other writer rank; each of them then sends
its parts as they are encoded, the last one marked: a pickled header (chunk offsets, masks and sizes,
raw blocks' shapes; in the last part its error and the batch's cost), then the part's encoded chunks
concatenated in one buffer and each block of raw rows as it is (no pickling of bulk data). Messages of
one rank arrive in the order sent (MPI's non-overtaking rule), so a part's buffers follow its header.
The storing rank takes the parts in the order they come (any source). Every wait is sleep-polled
(protocol/mpi_roles.py): a rank waiting for another gives its CPU away instead of spinning in MPI's
progress engine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from ...protocol.mpi_roles import BUNDLE_DATA_TAG, BUNDLE_TAG, PLAN_TAG, POLL_MIN_S, backoff, wait_for_message
from .bundle import EncodedChunk, Part, RawRows
from .plan import BatchPlan

STORING_RANK = 0


@dataclass
class PartHeader:
    chunks: list[tuple[int, tuple[int, ...], int, int]]  # (write, offset, mask, nbytes), in buffer order
    raw: list[tuple[int, int, tuple[int, ...], str]]  # (write, first, shape, dtype), one message each
    error: str = ""
    last: bool = False
    cpu_s: float = 0.0
    nbytes_share: int = 0

    @property
    def nbytes(self) -> int:
        return sum(c[3] for c in self.chunks)


def wait_all(requests: list[MPI.Request]) -> None:
    """Until every request completes, sleep-polled."""
    sleep_s = POLL_MIN_S
    while not MPI.Request.Testall(requests):
        sleep_s = backoff(sleep_s)


def _as_bytes(array: np.ndarray) -> list:
    """An MPI byte buffer over a contiguous array (any dtype, any byte order)."""
    return [np.ascontiguousarray(array).reshape(-1).view(np.uint8), MPI.BYTE]


def send_plan(writers: MPI.Intracomm, plan: BatchPlan) -> None:
    """STORING RANK: the plan to every other writer rank."""
    wait_all([writers.isend(plan, dest=rank, tag=PLAN_TAG) for rank in range(1, writers.size)])


def receive_plan(writers: MPI.Intracomm) -> BatchPlan:
    """OTHER WRITER RANKS: the storing rank's plan of the current batch."""
    wait_for_message(writers, STORING_RANK, PLAN_TAG)
    return writers.recv(source=STORING_RANK, tag=PLAN_TAG)


def send_part(writers: MPI.Intracomm, part: Part) -> list[MPI.Request]:
    """OTHER WRITER RANKS: one part sent to the storing rank (not waited for: the requests, which hold
    the buffers until they complete)."""
    sizes = [memoryview(c.data).nbytes for c in part.chunks]
    header = PartHeader([(c.write, c.offset, c.mask, n) for c, n in zip(part.chunks, sizes)],
                        [(r.write, r.first, tuple(r.rows.shape), r.rows.dtype.str) for r in part.raw],
                        part.error, part.last, part.cpu_s, part.nbytes)
    requests = [writers.isend(header, dest=STORING_RANK, tag=BUNDLE_TAG)]
    if sizes:
        buffer = np.empty(sum(sizes), dtype=np.uint8)
        at = 0
        for chunk, n in zip(part.chunks, sizes):
            buffer[at:at + n] = np.frombuffer(chunk.data, dtype=np.uint8, count=n)
            at += n
        requests.append(writers.Isend([buffer, MPI.BYTE], dest=STORING_RANK, tag=BUNDLE_DATA_TAG))
    return requests + [writers.Isend(_as_bytes(r.rows), dest=STORING_RANK, tag=BUNDLE_DATA_TAG) for r in part.raw]


def part_waiting(writers: MPI.Intracomm) -> int | None:
    """STORING RANK: the rank whose next part has arrived (its header), or None (not waited for)."""
    status = MPI.Status()
    return status.Get_source() if writers.Iprobe(source=MPI.ANY_SOURCE, tag=BUNDLE_TAG, status=status) else None


def receive_part(writers: MPI.Intracomm, source: int) -> Part:
    """STORING RANK: the part whose header came from `source`, its buffers received."""
    header: PartHeader = writers.recv(source=source, tag=BUNDLE_TAG)
    buffer = np.empty(header.nbytes, dtype=np.uint8)
    requests = [writers.Irecv([buffer, MPI.BYTE], source=source, tag=BUNDLE_DATA_TAG)] if header.chunks else []
    raw = [RawRows(write, first, np.empty(shape, dtype=np.dtype(dtype))) for write, first, shape, dtype in header.raw]
    requests += [writers.Irecv(_as_bytes(r.rows), source=source, tag=BUNDLE_DATA_TAG) for r in raw]
    wait_all(requests)
    chunks, at = [], 0
    view = memoryview(buffer)
    for write, offset, mask, n in header.chunks:
        chunks.append(EncodedChunk(write, offset, mask, view[at:at + n]))
        at += n
    return Part(chunks, raw, header.error, header.last, header.cpu_s, header.nbytes_share)
