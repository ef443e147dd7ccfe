"""A dataset's HDF5 filter pipeline applied to one chunk outside HDF5, by the filter plugins themselves.

Why: a file written by one process (one writer rank) can take pre-compressed chunks
(H5Dwrite_chunk), so chunks are compressed on several cores at once, with one copy of the data
instead of HDF5's gather + scatter. The bytes are those HDF5 would store: every filter is the
very plugin HDF5 loads (hdf5plugin's `H5PLget_plugin_info` → `H5Z_class2_t.filter`), called with
the dataset's own client data (as `set_local` completed them at creation) and HDF5's calling
convention (a malloc'd buffer the filter may replace). ctypes releases the GIL during each filter
call, so a thread pool compresses in parallel, concurrently with HDF5 calls of other threads.

Only filters that keep no state between calls and always encode are taken (ENCODABLE_FILTERS:
bitshuffle(+LZ4), LZ4, Zstandard), and HDF5's own byte shuffle and deflate (gzip), which are not
plugins: `BuiltinEncoder` applies them as HDF5 does (the same system zlib as libhdf5 here: the
same bytes; another zlib would give other bytes, as valid; zlib releases the GIL too). A filter that
fails here fails the write (HDF5 would skip an optional one; these fail only without memory).

Blosc (WHOLE_CHUNK_FILTERS) only for chunks that are never written again (`whole_chunks=True`, the
storing rank's path, writers/storing/): it leaves an incompressible chunk unfiltered, an optional filter
HDF5 skips and marks in the chunk's filter mask, which `encode_masked` reproduces; HDF5 1.10.8's
cached chunk entry ignores that mask when it merges later rows into the chunk (a decompression
error), so the one-writer path, which stores a last chunk padded and merges rows into it later,
leaves Blosc to HDF5. Blosc's library-wide compressor setting is set from the dataset's own client
data at every call and its compression holds Blosc's global lock. Lossy filters and fletcher32 stay
with HDF5. The plugins' only call into HDF5 is `H5Epush` on a failure, made outside h5py's lock: the
one unsynchronised HDF5 call of this path, on an error that fails the scan anyway.
"""
from __future__ import annotations

import ctypes
import functools
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import h5py
import numpy as np

ENCODABLE_FILTERS = frozenset({32008, 32004, 32015})  # bitshuffle, LZ4, Zstandard (HDF5 filter ids)
H5Z_FILTER_BLOSC = 32001
WHOLE_CHUNK_FILTERS = ENCODABLE_FILTERS | {H5Z_FILTER_BLOSC}  # chunks never merged again (docstring)
H5Z_FILTER_DEFLATE, H5Z_FILTER_SHUFFLE = 1, 2
BUILTIN_FILTERS = frozenset({H5Z_FILTER_DEFLATE, H5Z_FILTER_SHUFFLE})
H5Z_FLAG_OPTIONAL = 0x0001


class Encoder(Protocol):
    """What the direct writer needs: a chunk copied out of the rows (`load`), then encoded (or dropped)."""

    chunk_shape: tuple[int, ...]

    def load(self, chunk: np.ndarray) -> Any: ...

    def drop(self, loaded: Any) -> None: ...

    def encode_loaded(self, loaded: Any) -> bytes | np.ndarray: ...

    def encode_masked(self, loaded: Any) -> tuple[bytes | np.ndarray, int]: ...


@dataclass(frozen=True)
class PipelineFilter:
    """One filter of a dataset's pipeline, as HDF5 holds it after `set_local` (what an encoder is built from)."""

    code: int
    flags: int
    cd_values: tuple[int, ...]


_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.restype = None
_libc.free.argtypes = [ctypes.c_void_p]

# A chunk's buffers (its copy, each filter's output) are malloc'd and freed at every chunk, the filters'
# from the compressing threads. glibc serves blocks past its mmap threshold (128 KiB, raised only as big
# blocks are freed) with fresh mappings, and gives a thread arena's free top back at once: every chunk
# then costs page faults and the zeroing of every page (a third of a writer rank's CPU for LZ4, `perf
# record`, perf/SCALING.md). Blocks up to MMAP_THRESHOLD come from the heap, and up to TRIM_THRESHOLD
# of free memory stays at an arena's top, to be used again (NXPAR_MALLOC_TUNING=0: glibc's defaults).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20


@functools.lru_cache(maxsize=1)
def keep_freed_buffers() -> bool:
    """Once per process, before chunks are encoded: glibc keeps freed chunk buffers for reuse (above);
    True if it was set."""
    import os

    if os.environ.get("NXPAR_MALLOC_TUNING", "1") == "0" or not hasattr(_libc, "mallopt"):
        return False
    return bool(_libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(_libc.mallopt(M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))

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


class ChunkEncoder:
    """Encodes whole chunks of one dataset exactly as its filter pipeline would."""

    def __init__(self, steps: list[FilterStep], chunk_shape: tuple[int, ...], dtype: np.dtype,
                 skip_optional: bool = False) -> None:
        self.steps = steps
        self.chunk_shape = chunk_shape
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(chunk_shape)) * self.dtype.itemsize
        self.skip_optional = skip_optional  # an optional filter that fails is skipped, as HDF5 does (a mask bit)

    def encode(self, chunk: np.ndarray) -> bytes:
        """The stored bytes of one chunk (`chunk_shape`, any strides). Thread-safe."""
        return self.encode_loaded(self.load(chunk))

    def load(self, chunk: np.ndarray) -> int:
        """A malloc'd copy of one chunk (`chunk_shape`, any strides), to give to `encode_loaded`
        (which frees it) or to `drop`: the caller's rows may be reused as soon as this returns."""
        if chunk.shape != self.chunk_shape:
            raise ValueError(f"chunk shape {chunk.shape} is not {self.chunk_shape}")
        ptr = _libc.malloc(self.nbytes)
        if not ptr:
            raise MemoryError("cannot allocate a chunk buffer")
        target = (ctypes.c_char * self.nbytes).from_address(ptr)
        np.frombuffer(target, self.dtype).reshape(self.chunk_shape)[...] = chunk
        return ptr

    @staticmethod
    def drop(ptr: int) -> None:
        _libc.free(ptr)

    def encode_loaded(self, ptr: int) -> bytes:
        """The stored bytes of a loaded chunk (filter mask 0); its buffer is freed. Thread-safe."""
        data, mask = self.encode_masked(ptr)
        if mask:
            raise ChunkEncodeError(f"optional filters {mask:#x} of the pipeline skipped a chunk")
        return data

    def encode_masked(self, ptr: int) -> tuple[bytes, int]:
        """(stored bytes, filter mask) of a loaded chunk; its buffer is freed. Thread-safe.

        HDF5's convention: a filter gets the buffer and its size, may replace the buffer (freeing
        the old one) and returns the bytes it holds, 0 on failure (the buffer left valid). An optional
        filter that fails is skipped if `skip_optional` (bit i of the mask, as H5Z_pipeline sets it)."""
        buf, mask = ctypes.c_void_p(ptr), 0
        try:
            size, nbytes = ctypes.c_size_t(self.nbytes), self.nbytes
            for i, step in enumerate(self.steps):
                cd = (ctypes.c_uint * len(step.cd_values))(*step.cd_values)
                out = step.func(step.flags, len(step.cd_values), cd, nbytes, ctypes.byref(size), ctypes.byref(buf))
                if out == 0 and self.skip_optional and step.flags & H5Z_FLAG_OPTIONAL:
                    mask |= 1 << i
                elif out == 0:
                    raise ChunkEncodeError(f"filter {i} of the pipeline failed on a chunk")
                else:
                    nbytes = out
            return ctypes.string_at(buf.value, nbytes), mask
        finally:
            _libc.free(buf.value)


class BuiltinEncoder:
    """HDF5's byte shuffle and deflate, in the dataset's pipeline order: shuffle puts byte k of every
    element together (H5Z__filter_shuffle), deflate is zlib's compress2 at the dataset's level."""

    def __init__(self, steps: list[tuple[int, tuple[int, ...]]], chunk_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.steps = steps
        self.chunk_shape = chunk_shape
        self.dtype = np.dtype(dtype)

    def encode(self, chunk: np.ndarray) -> bytes:
        return self.encode_loaded(self.load(chunk))

    def load(self, chunk: np.ndarray) -> np.ndarray:
        if chunk.shape != self.chunk_shape:
            raise ValueError(f"chunk shape {chunk.shape} is not {self.chunk_shape}")
        return np.array(chunk, dtype=self.dtype, order="C")

    @staticmethod
    def drop(loaded: np.ndarray) -> None:
        pass

    def encode_loaded(self, loaded: np.ndarray) -> bytes | np.ndarray:
        data: Any = loaded.reshape(-1).view(np.uint8)
        for code, cd_values in self.steps:
            if code == H5Z_FILTER_SHUFFLE:
                data = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
                size, count = cd_values[0], data.size // cd_values[0]
                if size > 1 and count > 1:
                    whole = count * size
                    shuffled = data[:whole].reshape(count, size).T.reshape(-1)
                    data = shuffled if whole == data.size else np.concatenate([shuffled, data[whole:]])
            else:
                data = zlib.compress(data, cd_values[0])
        return data  # bytes, or a contiguous array (write_direct_chunk takes any buffer)

    def encode_masked(self, loaded: np.ndarray) -> tuple[bytes | np.ndarray, int]:
        return self.encode_loaded(loaded), 0  # shuffle and deflate never skip a chunk


def pipeline_filters(dset: h5py.Dataset) -> tuple[PipelineFilter, ...]:
    """The dataset's filter pipeline, in order, with the client data `set_local` completed."""
    dcpl = dset.id.get_create_plist()
    return tuple(PipelineFilter(int(code), int(flags), tuple(int(v) for v in cd))
                 for code, flags, cd, _name in (dcpl.get_filter(i) for i in range(dcpl.get_nfilters())))


def encoder_for(dset: h5py.Dataset) -> Encoder | None:
    """An encoder for a chunked dataset whose filters are all ENCODABLE_FILTERS, or all HDF5's shuffle
    and deflate; None otherwise (unfiltered, or other filters: HDF5 writes those)."""
    if dset.chunks is None or dset.dtype.kind not in "biuf":
        return None
    return encoder_for_filters(pipeline_filters(dset), tuple(dset.chunks), dset.dtype)


def encoder_for_filters(pipeline: tuple[PipelineFilter, ...], chunk_shape: tuple[int, ...], dtype: Any,
                        whole_chunks: bool = False) -> Encoder | None:
    """An encoder for this pipeline (see `encoder_for`); whole_chunks: for chunks never written again,
    where Blosc is taken too and an optional filter that fails is skipped as HDF5 does (a mask bit)."""
    codes = {p.code for p in pipeline}
    if not codes or np.dtype(dtype).kind not in "biuf":
        return None
    if codes <= BUILTIN_FILTERS:
        # as HDF5 1.10.8 applies them: each once, one client value each (shuffle: the element size set
        # at creation; deflate: a level 0-9); otherwise HDF5 skips the filter, which is not ours to mimic
        if len(pipeline) != len(codes) or any(len(p.cd_values) != 1 for p in pipeline) or \
                any(p.code == H5Z_FILTER_DEFLATE and not 0 <= p.cd_values[0] <= 9 for p in pipeline):
            return None
        return BuiltinEncoder([(p.code, p.cd_values) for p in pipeline], chunk_shape, dtype)
    available = plugin_filters()
    if not codes <= (WHOLE_CHUNK_FILTERS if whole_chunks else ENCODABLE_FILTERS) & set(available):
        return None
    steps = [FilterStep(available[p.code], p.flags, p.cd_values) for p in pipeline]
    return ChunkEncoder(steps, chunk_shape, dtype, skip_optional=whole_chunks)
