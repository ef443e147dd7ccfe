"""RANK 0 ONLY: drives the writing of scans. Sessions discover scans in Redis, one `ScanDriver` thread per
scan follows it (plan → rows due → finalise), requested scans (BlissWriter, batch) by key, the journal of
scans in flight, and the one writer channel thread that sends steps to the writer ranks. Never touches
HDF5 or bulk data. Imports protocol/, sources/, nexus/, util/ — never writers/ or service/."""
