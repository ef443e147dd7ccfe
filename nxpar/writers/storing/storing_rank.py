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
from concurrent.futures import Future, ThreadPoolExecutor, wait

import h5py
from mpi4py import MPI

from ...protocol import steps as st
from ...protocol.mpi_roles import POLL_MIN_S, WORKING_POLL_MAX_S, next_sleep
from ..agreement import StepFailed
from ..direct.chunk_codec import keep_freed_buffers
from ..datasets import resize_for, write_selection
from ..executor import SPACE_RESERVE_BYTES, StepExecutor
from ..write_mode import SerialWrites
from .batch_reads import BatchReads
from .bundle import Encoding, Part, compress_threads, start_encoding
from .plan import BatchPlan, WritePlan, pipeline_for
from .shares import BatchCost, ShareSplit
from .transfer import part_waiting, receive_part, send_plan


class StoringRankExecutor(StepExecutor):
    answers_alone = True

    def __init__(self, writers: MPI.Intracomm, split: ShareSplit) -> None:
        super().__init__(MPI.COMM_SELF, SerialWrites())  # its files: one process, serial driver
        self.writers = writers
        self.batch = BatchReads(writers, split, lambda: self.peek_next())
        self.reader, self.given_up = self.batch.reader, self.batch.given_up  # forgotten by StepExecutor's close
        self.pool = ThreadPoolExecutor(compress_threads(writers.size), thread_name_prefix="nxpar-compress")
        keep_freed_buffers()
        self.next_balance: tuple[str, float] | None = None  # measured after a batch, sent with the next plan

    def _write_batch(self, step: st.WriteBatch) -> dict[str, st.ChannelFailure]:
        """COLLECTIVE over the writer ranks (module docstring)."""
        cpu_since = time.process_time()
        rows, shares = self.batch.read(step, lambda: self._batch_error(step))
        plan = self._prepare(step, self.batch.variable_dims(step, rows))
        plan.balance, self.next_balance = self.next_balance, None
        send_plan(self.writers, plan)
        self.batch.take_balance(plan.balance)
        if plan.error:
            raise StepFailed(plan.error)
        encoding = start_encoding(self.pool, plan, step.writes, shares, rows)
        errors, costs = self._collect(step, plan, encoding)
        self._balance(step, BatchCost(time.process_time() - cpu_since, self.batch.share_bytes(step, shares)), costs)
        if errors:
            raise StepFailed("; ".join(errors))
        return self.batch.failures(step)

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

    def _collect(self, step: st.WriteBatch, plan: BatchPlan, encoding: Encoding) -> tuple[list[str], list[BatchCost]]:
        """Every other rank's parts stored as they come and this rank's own as they are encoded, until
        every rank's last part; (the errors, with their rank; the other ranks' costs)."""
        dsets = {i: self.datasets.open[(step.scan_id, w.spec.path)] for i, (w, p) in
                 enumerate(zip(step.writes, plan.writes)) if p is not None}
        waiting, own = set(range(1, self.writers.size)), list(encoding.parts)
        errors: list[str] = []
        costs: list[BatchCost] = []
        sleep_s = POLL_MIN_S
        while waiting or own:
            source = part_waiting(self.writers) if waiting else None
            if source is not None:
                part = receive_part(self.writers, source)
                errors += [f"writer rank {source}: {e}" for e in self._store(step, dsets, part)]
                if part.last:
                    waiting.discard(source)
                    costs.append(BatchCost(part.cpu_s, part.nbytes))
            elif own and own[0].done():
                errors += self._store(step, dsets, own_part(own.pop(0)))
            else:  # nothing yet: sleep, or until this rank's next part is encoded
                if own:
                    wait(own[:1], timeout=sleep_s)
                else:
                    time.sleep(sleep_s)
                sleep_s = next_sleep(sleep_s, WORKING_POLL_MAX_S)
                continue
            sleep_s = POLL_MIN_S
        return errors + self._store(step, dsets, encoding.last(0.0, 0)), costs

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
            super().close_all()
        finally:
            self.pool.shutdown(wait=True)


def own_part(future: Future) -> Part:
    """The part a task of this rank encoded, or its error."""
    try:
        return future.result()
    except Exception as e:
        return Part(error=f"compressing chunks: {type(e).__name__}: {e}")
