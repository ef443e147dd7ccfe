"""ONE WRITER PROCESS ONLY: whole chunks of filtered datasets compressed outside HDF5 by the dataset's own
filter plugins (`chunk_codec`) on a thread pool and stored with H5Dwrite_chunk (`chunk_writer`). Imports
protocol/ only (and h5py, numpy)."""
