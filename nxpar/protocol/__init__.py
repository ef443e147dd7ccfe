"""What rank 0 and the writer ranks share, and nothing else: the steps rank 0 sends (`steps`), the
device options both sides read (`options`), who does what in the MPI job and how ranks wait and agree
(`mpi_roles`). Imports: util/ only (and numpy, mpi4py)."""
