"""nxpar: an MPI + parallel-HDF5 NeXus writer for BLISS, a drop-in for the ESRF `NexusWriter` service.

The packages follow the path of the data (docs/architecture.md draws it):

    service/   entry points and Tango devices (NexusWriterService, RegisterNexusWriter, NexusWriterBatch):
               wires the MPI roles together; the only package that imports both driver/ and writers/
    driver/    RANK 0: sessions, scan discovery, one scan driver per scan (plan, rows due, finalisation),
               the journal, the writer channel that sends steps to the writer ranks
    protocol/  what rank 0 and the writer ranks share: the steps, the options, the MPI roles and tags
    writers/   RANKS 1..N-1 (or rank 0 alone): execute steps on the scan files, collectively;
               direct/ is the one-writer path (pre-compressed whole chunks)
    sources/   where rows come from: Redis (blissdata's layout, the RESP reader), Lima / Lima2 / Mosca files
               and servers
    nexus/     pure planning: scan_info / h5map → the NeXus tree, chunks, plots (no I/O)
    util/      small helpers with no nxpar imports (disk checks, retries)

Direction (tests/unit/test_architecture.py): service → driver | writers → protocol, sources, nexus → util.
driver/ and writers/ never import each other; nexus/ imports only protocol/ and util/.
"""
