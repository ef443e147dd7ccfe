"""THE WRITER RANKS (ranks 1..N-1, or rank 0 when N == 1): the rank loop receives steps, the executor
applies them to the scan files (local work, then agreement, then HDF5), the tree and layout of rows, how
files are opened. The write path, chosen once (write_mode.py): one writer process writes alone (direct/:
serial driver, whole chunks compressed outside HDF5); several writer ranks go through one storing rank
(storing/: it alone holds the files, every rank compresses its whole chunks and sends them to it; no
collective HDF5 call), or, on request, write the file together through MPI-IO (executor.py, collective).
Imports protocol/, sources/, nexus/ (compression names), util/ — never driver/ or service/."""
