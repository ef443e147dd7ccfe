"""Pure planning, no I/O: scan_info (or a blissdata h5map) → the NeXus tree as `Node`s and `ArraySpec`s,
channel → NeXus place (`channel_mapping`, blisswriter's rules), chunks and compression names, plots,
Lima / Lima2 / Mosca plan parts; `file_plan` says what the driver asks of a plan. Imports protocol/
and util/ only; never h5py, MPI, Redis or Tango."""
