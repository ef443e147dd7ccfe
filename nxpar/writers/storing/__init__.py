"""SEVERAL WRITER RANKS, THE STORING PATH: one storing rank (the first writer rank) holds the scan files
(serial driver) and applies every metadata step alone; every writer rank (the storing rank too, with
fewer rows when storing costs it more) reads its share of a WriteBatch, compresses its chunks with the
dataset's own filter pipeline (direct/chunk_codec.py, built from the pipeline the storing rank sends:
filter ids, flags, client data after set_local) and sends them to the storing rank, which stores them
with H5Dwrite_chunk. Rows that share a chunk with rows written earlier, grid (keepshape) and variable
rows, and filters chunk_codec does not encode go to the storing rank as raw rows, written through HDF5
there. No collective HDF5 call is left: the writer ranks meet only in the step's agreement and the
transfer, and the storing rank answers rank 0 for all.

    shares.py        each rank's share of a write (whole chunks; the storing rank's balanced)
    plan.py          what the storing rank sends before the transfer: each write's pipeline, padded dims
    batch_reads.py   reading a share, the agreement (read errors, channel failures), variable dims
    bundle.py        a rank's chunks compressed on a thread pool, in parts; its raw rows
    transfer.py      the plan and the parts over MPI point-to-point, sleep-polled
    storing_rank.py  the storing rank's executor (StepExecutor on its own files)
    sending_rank.py  the other writer ranks' executor

Imports protocol/, sources/, util/ and the writers modules it builds on (executor, datasets, direct/).
"""
