"""THE STORING RANK (the first writer rank of several): the only writer rank with the scan files open.

It is the one-writer executor on its own files (a StepExecutor on COMM_SELF, serial driver): every
metadata step (OpenFile, Tree, LocalFile, Flush, CloseFile, MarkFailed) is applied here alone, with
the file identity checks of scan_files.py; the other writer ranks only receive those steps. With no
collective HDF5 call left, the ranks' views of a file cannot diverge (scan_files.py's "diverged" and
abandoned files stay for the MPI-IO path). A WriteBatch is the only step all writer ranks work on:

    all      read their share, agree (read errors, channel failures; here also: no open file, no space)
    all      agree on variable rows' dims (only when the batch has some)
    storing  creates or opens each dataset and resizes it; sends the plan (pipelines, padded dims, balance)
    all      encode their chunks; the others send them in parts as they are encoded, the last part with
             their raw rows, their error if any and what the batch cost them
    storing  stores every part as it comes (H5Dwrite_chunk; raw rows through HDF5), its own as they are
             encoded, until every rank's last part; then balances its share from the costs (shares.py)

The storing rank answers rank 0 alone (`answers_alone`: rank_loop skips the writer ranks' agreement at
the end of a step): the other ranks' failures reach it in their last part, and they go on to the next
step's reads while it stores. Errors while storing do not stop it from taking every part (the others
would wait); the step then fails with every reason. Chunks already stored stay (one process holds the
file: its view cannot split), as with the one-writer path.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h5py
from mpi4py import MPI

from ...protocol import steps as st
from ...protocol.mpi_roles import set_idle_work
from ..agreement import StepFailed
from ..direct.chunk_codec import keep_freed_buffers
from ..datasets import resize_for, write_selection
from ..executor import SPACE_RESERVE_BYTES, StepExecutor
from ..write_mode import SerialWrites
from .batch_reads import BatchReads
from .bundle import Part, compress_threads, start_encoding
from .pending import PENDING, PendingBatch, PendingBatches
from .plan import BatchPlan, WritePlan, pipeline_for
from .shares import BatchCost, ShareSplit
from .transfer import send_plan


class StoringRankExecutor(StepExecutor):
    answers_alone = True
    pipelined = False  # True (WriterRankLoop): a WriteBatch's answer comes later, in `completed`

    def __init__(self, writers: MPI.Intracomm, split: ShareSplit) -> None:
        super().__init__(MPI.COMM_SELF, SerialWrites())  # its files: one process, serial driver
        self.writers = writers
        self.batch = BatchReads(writers, split, lambda: self.peek_next())
        self.reader, self.given_up = self.batch.reader, self.batch.given_up  # forgotten by StepExecutor's close
        self.pool = ThreadPoolExecutor(compress_threads(writers.size), thread_name_prefix="nxpar-compress")
        keep_freed_buffers()
        self.next_balance: tuple[str, float] | None = None  # measured after a batch, sent with the next plan
        self.pending = PendingBatches(writers, self._store, self._finish)
        self.completed = self.pending.completed  # answers of PENDING steps, in step order (WriterRankLoop)
        set_idle_work(self.pump)  # parts stored while this rank waits for anything (the rank loop's own wraps it)

    def execute(self, step: Any) -> Any:
        """A WriteBatch: PENDING once its parts are coming (its answer in `completed` later); any other
        step after every batch before it is stored."""
        if not isinstance(step, st.WriteBatch):
            self.pending.drain()
        return super().execute(step)

    def pump(self) -> bool:
        """LOCAL: the parts that came stored, complete batches answered (pending.py)."""
        return self.pending.pump()

    def _write_batch(self, step: st.WriteBatch) -> Any:
        """COLLECTIVE over the writer ranks (module docstring); its parts are stored later (pending.py)."""
        cpu_since = time.process_time()
        rows, shares = self.batch.read(step, lambda: self._batch_error(step))
        plan = self._prepare(step, self.batch.variable_dims(step, rows))
        plan.balance, self.next_balance = self.next_balance, None
        batch = None
        if not plan.error:
            dsets = {i: self.datasets.open[(step.scan_id, w.spec.path)] for i, (w, p) in
                     enumerate(zip(step.writes, plan.writes)) if p is not None}
            batch = PendingBatch(step, dsets, shares, cpu_since, set(range(1, self.writers.size)))
            self.pending.add(batch)  # before the plan: the others' parts may come at once
        send_plan(self.writers, plan)
        self.batch.take_balance(plan.balance)
        if plan.error:
            raise StepFailed(plan.error)
        batch.start(start_encoding(self.pool, plan, step.writes, shares, rows))
        if self.pipelined:
            return PENDING
        self.pending.drain()  # called alone (tests): the step's own answer
        result = self.completed.pop()
        if not result.ok:
            raise StepFailed(result.error)
        return result.value

    def _finish(self, batch: PendingBatch) -> st.StepResult:
        """A batch whose every part is stored: the shares balanced from its costs; its answer."""
        step = batch.step
        own = BatchCost(time.process_time() - batch.cpu_since, self.batch.share_bytes(step, batch.shares))
        self._balance(step, own, batch.costs)
        if batch.errors:
            return st.StepResult(False, error="; ".join(batch.errors))
        return st.StepResult(True, value=self.batch.failures(step))

    def _batch_error(self, step: st.WriteBatch) -> str:
        """LOCAL: why this rank cannot take the batch ('' if it can): no open file, no space."""
        try:
            self._file(step.scan_id)
        except StepFailed as e:
            return str(e)
        return self._space_error(step.scan_id, step.nbytes, SPACE_RESERVE_BYTES)

    def _prepare(self, step: st.WriteBatch, dims: dict[int, tuple[int, ...]]) -> BatchPlan:
        """Each written dataset created or opened and resized for the batch; the plan the others need
        (never raises: the others wait for it)."""
        try:
            f = self._file(step.scan_id)
        except Exception as e:
            return BatchPlan(str(e))
        plans: list[WritePlan | None] = []
        for i, (write, written) in enumerate(zip(step.writes, self.batch.written(step))):
            if not written:
                plans.append(None)
                continue
            what = "dataset"
            try:
                dset = self.datasets.get_or_create(step.scan_id, f, write.spec)
                what = "resizing"
                detector_dims = tuple(dset.shape[write.spec.scan_ndim:])
                if i in dims:
                    detector_dims = tuple(max(a, b) for a, b in zip(detector_dims, dims[i]))
                resize_for(dset, write.spec, write.stop, detector_dims)
                plans.append(WritePlan(pipeline_for(write.spec, dset), detector_dims if i in dims else None))
            except Exception as e:
                return BatchPlan(f"{write.source.stream_name}: {what}: {e}")
        return BatchPlan("", plans)

    def _store(self, step: st.WriteBatch, dsets: dict[int, h5py.Dataset], part: Part) -> list[str]:
        """One part stored: chunks with H5Dwrite_chunk, raw rows through HDF5; its errors."""
        if part.error:
            return [part.error]
        try:
            for chunk in part.chunks:
                dsets[chunk.write].id.write_direct_chunk(chunk.offset, chunk.data, chunk.mask)
            for raw in part.raw:
                spec = step.writes[raw.write].spec
                write_selection(dsets[raw.write], spec.scan_ndim, raw.first, raw.rows, transfer=None)
        except Exception as e:
            return [f"storing rows: {type(e).__name__}: {e}"]
        return []

    def _balance(self, step: st.WriteBatch, own: BatchCost, others: list[BatchCost]) -> None:
        scheme = self.batch.scheme(step)
        overhead = self.batch.split.balanced(scheme, self.batch.row_bytes(step), own, others)
        if overhead is not None:
            self.next_balance = (scheme, overhead)

    def close_all(self) -> None:
        try:
            self.pending.drain()
            super().close_all()
        finally:
            self.pool.shutdown(wait=True)
