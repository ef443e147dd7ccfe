"""A dataset's HDF5 filter pipeline applied to one chunk outside HDF5, by the filter plugins themselves.

Why: a file written by one process (one writer rank) can take pre-compressed chunks
(H5Dwrite_chunk), so chunks are compressed on several cores at once, with one copy of the data
instead of HDF5's gather + scatter. The bytes are those HDF5 would store: every filter is the
very plugin HDF5 loads (hdf5plugin's `H5PLget_plugin_info` → `H5Z_class2_t.filter`), called with
the dataset's own client data (as `set_local` completed them at creation) and HDF5's calling
convention (a malloc'd buffer the filter may replace). HDF5's built-in filters (deflate, shuffle,
fletcher32, …) are not plugins: a dataset using one gets no encoder and is written through HDF5.
ctypes releases the GIL during each filter call, so a thread pool compresses in parallel; only
filters whose code keeps no global state run concurrently (CONCURRENT_FILTERS), others one at a time.
"""
from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass

import h5py
import numpy as np

H5Z_FLAG_OPTIONAL = 0x0001
# bitshuffle(+LZ4), LZ4, Zstandard: per-call state only. Blosc's filters also set library-wide options.
CONCURRENT_FILTERS = frozenset({32008, 32004, 32015})
_one_at_a_time = threading.Lock()

_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.restype = None
_libc.free.argtypes = [ctypes.c_void_p]

# size_t (*H5Z_func_t)(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
#                      size_t *buf_size, void **buf)
FilterFunc = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_uint, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint),
                              ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_void_p))


class H5ZClass2(ctypes.Structure):
    """H5Z_class2_t (H5Zpublic.h, HDF5 ≥ 1.8)."""

    _fields_ = [("version", ctypes.c_int), ("id", ctypes.c_int), ("encoder_present", ctypes.c_uint),
                ("decoder_present", ctypes.c_uint), ("name", ctypes.c_char_p), ("can_apply", ctypes.c_void_p),
                ("set_local", ctypes.c_void_p), ("filter", ctypes.c_void_p)]


class ChunkEncodeError(RuntimeError):
    """A mandatory filter failed on a chunk."""


@functools.lru_cache(maxsize=1)
def plugin_filters() -> dict[int, FilterFunc]:
    """{filter id: its filter function} of every hdf5plugin filter that can encode."""
    import hdf5plugin

    found: dict[int, FilterFunc] = {}
    for path in hdf5plugin.get_config().registered_filters.values():
        try:
            lib = ctypes.CDLL(path)
            lib.H5PLget_plugin_info.restype = ctypes.POINTER(H5ZClass2)
            info = lib.H5PLget_plugin_info().contents
        except (OSError, AttributeError, ValueError):
            continue
        if info.version == 1 and info.encoder_present and info.filter:
            found[int(info.id)] = FilterFunc(info.filter)
    return found


@dataclass(frozen=True)
class FilterStep:
    func: FilterFunc
    flags: int
    cd_values: tuple[int, ...]
    concurrent: bool = False


class ChunkEncoder:
    """Encodes whole chunks of one dataset exactly as its filter pipeline would."""

    def __init__(self, steps: list[FilterStep], chunk_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.steps = steps
        self.chunk_shape = chunk_shape
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(chunk_shape)) * self.dtype.itemsize
        self.concurrent = all(step.concurrent for step in steps)

    def encode(self, chunk: np.ndarray) -> tuple[bytes, int]:
        """(stored bytes, filter mask) of one chunk (`chunk_shape`, any strides). Thread-safe."""
        if self.concurrent:
            return self._encode(chunk)
        with _one_at_a_time:
            return self._encode(chunk)

    def _encode(self, chunk: np.ndarray) -> tuple[bytes, int]:
        if chunk.shape != self.chunk_shape:
            raise ValueError(f"chunk shape {chunk.shape} is not {self.chunk_shape}")
        buf = ctypes.c_void_p(_libc.malloc(self.nbytes))
        if not buf.value:
            raise MemoryError("cannot allocate a chunk buffer")
        try:
            target = (ctypes.c_char * self.nbytes).from_address(buf.value)
            np.frombuffer(target, self.dtype).reshape(self.chunk_shape)[...] = chunk
            size, nbytes, mask = ctypes.c_size_t(self.nbytes), self.nbytes, 0
            for i, step in enumerate(self.steps):
                cd = (ctypes.c_uint * len(step.cd_values))(*step.cd_values)
                out = step.func(step.flags, len(step.cd_values), cd, nbytes, ctypes.byref(size), ctypes.byref(buf))
                if out == 0:  # HDF5: an optional filter that fails is skipped and noted in the mask
                    if not step.flags & H5Z_FLAG_OPTIONAL:
                        raise ChunkEncodeError(f"filter {i} of the pipeline failed on a chunk")
                    mask |= 1 << i
                    continue
                nbytes = out
            return ctypes.string_at(buf.value, nbytes), mask
        finally:
            _libc.free(buf.value)


def encoder_for(dset: h5py.Dataset) -> ChunkEncoder | None:
    """An encoder for a chunked dataset whose every filter is an encoding plugin; None otherwise
    (unfiltered, or a built-in HDF5 filter: HDF5 writes those)."""
    if dset.chunks is None or dset.dtype.kind not in "biuf":
        return None
    dcpl = dset.id.get_create_plist()
    count = dcpl.get_nfilters()
    if count == 0:
        return None
    available = plugin_filters()
    steps = []
    for i in range(count):
        code, flags, cd_values, _name = dcpl.get_filter(i)
        if code not in available:
            return None
        steps.append(FilterStep(available[code], int(flags), tuple(int(v) for v in cd_values),
                                code in CONCURRENT_FILTERS))
    return ChunkEncoder(steps, tuple(dset.chunks), dset.dtype)
