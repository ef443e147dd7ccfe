"""The steps rank 0 sends to the writer ranks.

A step is a small picklable description of one collective operation on one scan file.  Every
writer rank receives the same steps in the same order (MPI point-to-point messages from one
source are not overtaken), so every collective HDF5 call is reached by all writer ranks together.
Bulk data never travels in a step: `WriteBatch` names Redis stream ranges that each writer rank
reads its own share of. A batch holds the pending rows of every stream of a scan, sized by bytes
(not rows), so a kHz scan of small rows costs a few steps a second and a step of big frames stays
within each rank's memory budget.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class NodeOp(str, enum.Enum):
    """What a Node does to the file tree (writers/tree.py has one handler per operation)."""

    GROUP = "group"  # require the group, set its attributes
    VALUE = "value"  # a small dataset (kept if it exists, unless overwrite)
    SOFTLINK = "softlink"
    EXTLINK = "extlink"
    ATTRS = "attrs"  # attributes of an existing object
    DELETE = "delete"
    VDS = "vds"  # Lima frames: a virtual dataset over whole frames of other files
    VDS_MAP = "vds_map"  # a virtual dataset from hyperslab selections (h5maps, mesh plots)
    EXTERNAL = "external"  # raw data in other (non-HDF5) files, e.g. EDF frames


@dataclass
class Node:
    """One metadata operation on the file tree (group, small dataset, link, attributes)."""

    op: NodeOp  # a plain string naming an operation is accepted and converted
    path: str
    value: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    target_file: str = ""
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.op = NodeOp(self.op)  # ValueError for an unknown operation, at planning time


@dataclass
class OpenFile:
    scan_id: str
    path: str
    root_attrs: dict[str, Any]
    entries: list[str]  # entries this scan will create: must not exist yet, unless replaced
    replace_entries: bool = False  # a scan written again after an interruption: what the dead run left goes


@dataclass
class Tree:
    scan_id: str
    nodes: list[Node]


@dataclass
class ArraySpec:
    """An appendable dataset fed from one stream, created at the stream's first data.

    scan_shape () is a flat scan: the dataset grows along axis 0. An nD scan_shape (keepshape)
    is created as the full grid, filled in C order; its slow axis grows if more points arrive.
    A detector dimension of -1 is variable: rows are padded with the fill value and the
    dimension grows to the longest row written so far.
    """

    path: str
    dtype: str
    detector_shape: tuple[int, ...]
    chunks: tuple[int, ...]
    compression: str  # see nxpar.nexus.compression
    fillvalue: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    scan_shape: tuple[int, ...] = ()

    @property
    def scan_ndim(self) -> int:
        return max(len(self.scan_shape), 1)

    @property
    def variable(self) -> bool:
        return any(n < 0 for n in self.detector_shape)

    @property
    def rows_per_chunk(self) -> int:
        """Scan points along the fast scan axis of one chunk (the unit of row ownership)."""
        return int(self.chunks[self.scan_ndim - 1])

    @property
    def chunk_tiles(self) -> int:
        """Chunks side by side in one chunk row (the detector dims tiled by the chunk); 1 for variable
        rows and grids, whose chunk rows are shared whole."""
        if self.variable or self.scan_ndim != 1:
            return 1
        return int(np.prod([-(-n // c) for n, c in zip(self.detector_shape, self.chunks[1:])], dtype=np.int64))

    @property
    def row_nbytes(self) -> int:
        """Uncompressed bytes of one row (one scan point); a variable dimension counts as 1."""
        return int(np.dtype(self.dtype).itemsize * np.prod([max(n, 1) for n in self.detector_shape], dtype=np.int64))


@dataclass
class StreamSource:
    """Where the writer ranks read rows from: a blissdata stream of a scan."""

    redis_url: str
    scan_key: str
    stream_name: str


@dataclass
class FileFramesSource:
    """Frames the writer ranks read from Lima's files (copy_non_external): refs[i] is row first_row + i.

    A ref is (file format, absolute path, dataset path in the file, frame index in the file).
    """

    stream_name: str
    first_row: int
    refs: list[tuple[str, str, str, int]]


@dataclass
class FileRunsSource:
    """Rows the writer ranks read from detector files (Lima2 master file, Mosca's spectra files):
    runs of (absolute path, dataset path, first index in the dataset, count), consecutive from
    row `first_row` on (see nxpar.sources.detector_files)."""

    stream_name: str
    first_row: int
    runs: list[tuple[str, str, int, int]]


class Piece(NamedTuple):
    """Frames of one Lima2 receiver's file: rows [index, index + count) of the file's dataset are
    rows first, first + stride, … of the scan's dataset (see nxpar.sources.lima2_receivers)."""

    path: str  # absolute
    dataset: str
    index: int
    count: int
    first: int
    stride: int


@dataclass
class FileStridedSource:
    """Frames the writer ranks read from Lima2's receivers' files, dealt round robin (pieces),
    rows reshaped to `row_shape` (see nxpar.sources.lima2_receivers)."""

    stream_name: str
    pieces: list[Piece]
    row_shape: tuple[int, ...]


@dataclass
class MoscaServerSource:
    """Spectra of one Mosca detector element that Mosca does not save: each writer rank reads its
    rows from the Mosca Tango device (see nxpar.sources.mosca_server)."""

    stream_name: str
    server_url: str
    acq_id: Any  # a mosca_server.Acquisition: the scan and Mosca's acquisition id (readers are kept per scan)
    detector: int


RowsSource = StreamSource | FileFramesSource | FileRunsSource | FileStridedSource | MoscaServerSource


@dataclass
class WriteRows:
    """Rows [start, stop) of a stream go to rows [start, stop) of a dataset (created if needed)."""

    spec: ArraySpec
    source: RowsSource
    start: int
    stop: int

    @property
    def nbytes(self) -> int:
        return (self.stop - self.start) * self.spec.row_nbytes


@dataclass
class WriteBatch:
    """Row writes of several streams of one scan in one step: one Redis round trip per writer
    rank, one agreement, then one collective write per dataset, in list order on every rank."""

    scan_id: str
    writes: list[WriteRows]

    @property
    def nbytes(self) -> int:
        return sum(w.nbytes for w in self.writes)


@dataclass
class Flush:
    scan_id: str


@dataclass
class CloseFile:
    scan_id: str


@dataclass
class LocalFile:
    """Metadata written by one rank into another file with the serial driver (master files)."""

    scan_id: str
    path: str
    root_attrs: dict[str, Any]
    nodes: list[Node]


@dataclass
class MarkFailed:
    """Open a file a scan cannot finish (a dead job's, a deleted one) and set writer/status=FAILED,
    writer/failure and end_time in each entry that did not finish."""

    path: str
    entries: list[str]
    reason: str
    end_time: str = ""  # ISO 8601, the writer's clock
    create_missing: bool = False  # the file is gone: make it again with just these entries' status


@dataclass
class Shutdown:
    """The writer ranks close every file and leave their loop."""


class FailureKind(str, enum.Enum):
    """Why the writer ranks skipped the rows of one channel in a WriteBatch (the rest is written)."""

    UNREADABLE = "unreadable"  # a Lima2 / Mosca file or server could not be read: a warning, channel given up
    MISMATCH = "mismatch"  # Redis holds rows that are not what the stream declares: the scan FAULTs at its end


@dataclass
class ChannelFailure:
    kind: FailureKind
    reason: str


@dataclass
class StepResult:
    ok: bool
    error: str = ""
    value: Any = None


@dataclass
class Envelope:
    """A step on its way to the writer ranks, numbered: every answer names the step it answers, so a
    lost or extra answer can never be taken for another step's (the channel stops the job instead)."""

    seq: int
    step: Any


@dataclass
class Answer:
    """The writers' combined result of step `seq` (sent by the first writer rank)."""

    seq: int
    result: StepResult


class MarkKind(str, enum.Enum):
    """How far one writer rank got with a step (`ProgressMark`)."""

    GOT = "got"  # received, about to execute
    DONE = "done"  # its own part executed, entering the step's agreement
    FAILED = "failed"  # its own part raised here, entering the step's agreement


@dataclass
class ProgressMark:
    """Sent by every writer rank to rank 0 as it goes (never waited for): rank 0 names the rank a
    stalled step waits for."""

    seq: int
    rank: int
    kind: MarkKind
    error: str = ""
