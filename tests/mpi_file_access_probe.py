"""Run under mpirun by tests/test_file_access.py: every rank opens one file with nxpar's
open_scan_file, writes its own chunk collectively, and writes what the open file's access property
list says (PROBE.rankN.json) plus the byte offset of every chunk."""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
from mpi4py import MPI

from nxpar.writers.file_access import coll_metadata, open_scan_file

logging.basicConfig(level=logging.INFO, format=f"[rank {MPI.COMM_WORLD.rank}] %(levelname)s %(name)s: %(message)s")
comm = MPI.COMM_WORLD
f = open_scan_file(sys.argv[1], comm)
dset = f.create_dataset("frames", shape=(comm.size, 300, 300), chunks=(1, 300, 300), dtype="u2")
with dset.collective:
    dset[comm.rank] = np.full((300, 300), comm.rank, dtype="u2")
f.flush()
fapl = f.id.get_access_plist()
_, info = fapl.get_fapl_mpio()
ops, write = coll_metadata(fapl)
report = {
    "rank": comm.rank,
    "alignment": list(fapl.get_alignment()),
    "hints": dict(info.items()) if info != MPI.INFO_NULL else {},
    "coll_metadata": [ops, write],
    "mdc_initial_size": fapl.get_mdc_config().initial_size,
    "meta_block_size": fapl.get_meta_block_size(),
    "chunk_offsets": [dset.id.get_chunk_info(i).byte_offset for i in range(dset.id.get_num_chunks())],
}
f.close()
with open(f"{sys.argv[1]}.rank{comm.rank}.json", "w") as out:  # stdout lines of ranks interleave
    json.dump(report, out)
