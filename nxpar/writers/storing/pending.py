"""THE STORING RANK (storing path): the batches whose parts are still coming, stored as they come.

A WriteBatch's step on the storing rank ends once its plan is sent and its own encoding started: its
parts (every rank's, its own included) are stored afterwards, by `pump`, called while the rank waits
for anything else (the next step, the next batch's agreement, its transfers: `mpi_roles.idle_work`),
so that every rank reads and agrees on batch k+1 while batch k is still being encoded and stored. A
batch's answer to rank 0 is ready once every rank's last part of it is stored (`completed`, in step
order). Every other step waits for the batches before it (`drain`): a Flush, Tree or CloseFile sees
every chunk sent before it.

Batches are stored in step order, the oldest pending one's parts first (later ones wait in MPI, their
encoding going on): parts of one rank arrive in the order it sent them (MPI's non-overtaking rule).
"""
from __future__ import annotations

import collections
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import h5py
from mpi4py import MPI

from ...protocol import steps as st
from ...protocol.mpi_roles import BUNDLE_TAG, POLL_MIN_S, next_sleep
from .bundle import Encoding, Part
from .shares import BatchCost, Share
from .transfer import receive_part


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()  # a step's value whose answer comes later (WriterRankLoop sends it in step order)


@dataclass
class PendingBatch:
    step: st.WriteBatch
    dsets: dict[int, h5py.Dataset]
    shares: list[Share]
    cpu_since: float  # process time when this rank started the batch
    waiting: set[int]  # writer ranks whose last part has not come
    own: list[Future] | None = None  # this rank's own parts, its raw rows last (None: not started)
    errors: list[str] = field(default_factory=list)
    costs: list[BatchCost] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.waiting and self.own == []

    def start(self, encoding: Encoding) -> None:
        """This rank's own parts: its encoded runs as they complete, then its raw rows."""
        last: Future = Future()
        last.set_result(encoding.last(0.0, 0))
        self.own = list(encoding.parts) + [last]


# what the storing executor does with a part (its errors), and with a batch once complete (its answer)
StoreFn = Callable[[st.WriteBatch, dict[int, h5py.Dataset], Part], list[str]]
FinishFn = Callable[[PendingBatch], st.StepResult]


class PendingBatches:
    def __init__(self, writers: MPI.Intracomm, store: StoreFn, finish: FinishFn) -> None:
        self.writers = writers
        self.store = store
        self.finish = finish
        self.pending: collections.deque[PendingBatch] = collections.deque()
        self.completed: collections.deque[st.StepResult] = collections.deque()
        self._pumping = False

    def add(self, batch: PendingBatch) -> None:
        self.pending.append(batch)

    def pump(self) -> bool:
        """LOCAL, never waits: store what has come (others' parts, this rank's encoded ones), finish the
        complete batches in order; whether anything was done. Re-entered (from a wait inside), a no-op."""
        if self._pumping:
            return False
        self._pumping = True
        try:
            done = False
            while self._store_one():
                done = True
            while self.pending and self.pending[0].complete:
                self.completed.append(self.finish(self.pending.popleft()))
                done = True
            return done
        finally:
            self._pumping = False

    def drain(self) -> None:
        """Until every pending batch is complete (sleep-polled)."""
        sleep_s = POLL_MIN_S
        while self.pending:
            if self.pump():
                sleep_s = POLL_MIN_S
                continue
            time.sleep(sleep_s)
            sleep_s = next_sleep(sleep_s)

    def _store_one(self) -> bool:
        """One part of the oldest pending batch stored, if one has come. Batches are stored one after the
        other: a batch's first rows may merge into the chunk a rank filled in part in the batch before
        (raw rows through HDF5), which must be stored first."""
        if not self.pending:
            return False
        batch = self.pending[0]
        for source in sorted(batch.waiting):
            if self.writers.Iprobe(source=source, tag=BUNDLE_TAG):
                part = receive_part(self.writers, source)
                batch.errors += [f"writer rank {source}: {e}" for e in self.store(batch.step, batch.dsets, part)]
                if part.last:
                    batch.waiting.discard(source)
                    batch.costs.append(BatchCost(part.cpu_s, part.nbytes))
                return True
        if batch.own and batch.own[0].done():
            batch.errors += self.store(batch.step, batch.dsets, own_part(batch.own.pop(0)))
            return True
        return False


def own_part(future: Future) -> Part:
    """The part a task of this rank encoded, or its error."""
    try:
        return future.result()
    except Exception as e:
        return Part(error=f"compressing chunks: {type(e).__name__}: {e}")

