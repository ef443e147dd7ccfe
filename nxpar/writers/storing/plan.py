"""ALL WRITER RANKS (storing path): what the storing rank tells the others about a WriteBatch once its
datasets exist, so that ranks without the file compress exactly as HDF5 would.

The other ranks never open the file: the storing rank creates or opens each dataset, resizes it, and
sends its filter pipeline as HDF5 holds it after `set_local` (filter ids, flags, client data), its
chunk shape, dtype and fill value; every rank builds the same encoder from it (direct/chunk_codec.py:
the dataset's own filter plugins, the very bytes HDF5 stores). A write with no pipeline (None) goes
to the storing rank as raw rows.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from ...protocol import steps as st
from ..direct.chunk_codec import Encoder, PipelineFilter, encoder_for_filters, pipeline_filters


@dataclass(frozen=True)
class DatasetPipeline:
    """How the whole chunks of one dataset are encoded, without the dataset."""

    chunks: tuple[int, ...]
    dtype: str
    fillvalue: Any
    filters: tuple[PipelineFilter, ...]


@dataclass(frozen=True)
class WritePlan:
    """One write of the batch: its pipeline (None: raw rows to the storing rank) and, for variable
    rows, the detector dims every rank pads its rows to."""

    pipeline: DatasetPipeline | None
    detector_dims: tuple[int, ...] | None = None


@dataclass
class BatchPlan:
    """The storing rank's word on a WriteBatch: an error (the step fails on every rank, nothing is
    sent), or one WritePlan per write (None: the write is skipped, its channel given up). `balance`:
    (scheme, overhead), what storing costs the storing rank in that scheme's batches (shares.py), the
    split of every batch after this one, taken by every rank with the plan, error or not."""

    error: str = ""
    writes: list[WritePlan | None] = field(default_factory=list)
    balance: tuple[str, float] | None = None


def pipeline_for(spec: st.ArraySpec, dset: h5py.Dataset) -> DatasetPipeline | None:
    """The pipeline of a dataset whose whole chunks other ranks may encode: flat, fixed rows,
    filters chunk_codec encodes (Blosc included: those chunks are never merged again); None otherwise."""
    if spec.scan_ndim != 1 or spec.variable or dset.chunks is None:
        return None
    pipeline = DatasetPipeline(tuple(dset.chunks), dset.dtype.str, _plain(dset.fillvalue), pipeline_filters(dset))
    return pipeline if encoder_of(pipeline) is not None else None


def _plain(value: Any) -> Any:
    """A numpy scalar as a plain Python value (pickled small, hashable)."""
    return value.item() if isinstance(value, np.generic) else value


@functools.lru_cache(maxsize=64)
def encoder_of(pipeline: DatasetPipeline) -> Encoder | None:
    """The encoder of whole chunks (thread-safe, kept: one per dataset pipeline)."""
    return encoder_for_filters(pipeline.filters, pipeline.chunks, np.dtype(pipeline.dtype), whole_chunks=True)
