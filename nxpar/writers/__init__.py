"""THE WRITER RANKS (ranks 1..N-1, or rank 0 when N == 1): the rank loop receives steps, the executor
applies them to the scan files (every step collective over the writer communicator: local work, then
agreement, then collective HDF5), the tree and layout of rows, how files are opened. The write mode,
chosen once, is MPI-IO (several writer ranks) or the one-writer path of direct/ (serial driver, whole
chunks compressed outside HDF5). Imports protocol/, sources/, nexus/ (compression names), util/ —
never driver/ or service/."""
