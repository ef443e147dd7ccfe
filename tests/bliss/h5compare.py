"""One NeXus entry written by nxpar against the same scan type's entry written by the reference
(blisswriter 2.0.0): the tree, links and their targets, attributes, shapes, dtypes and values.

The two entries come from two BLISS runs of the same scenario (one per writer), so the data of
random and timed channels (simulation diodes, fake detectors, the MCA, the timer) differ between
them. A dataset is therefore compared through BLISS's own data: one that holds exactly what BLISS
published for a channel in ITS run (flattened, NaN-padded rows allowed) is described as
`<data of CHANNEL>` and its shape as `published` when it is the published shape; everything else
(metadata, positioners, deterministic values) is compared value for value.

What may legitimately differ, and is not a difference (LEGITIMATE below, docs/reference_comparison.md):
the values of time stamps (`start_time`, `end_time`, `writer/date`, the root's `file_time`/
`file_update_time`), the name and versions of the software that wrote the file (`HDF5_Version`,
`h5py_version`, `creator_version`, `writer_version`, the root's `writer`), the run's directory inside
paths, how a string is stored (fixed or variable length: the same text), and the storage (chunks,
compression, filters, fill value): kept apart as `storage` notes.
"""
from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

import h5py
import hdf5plugin  # noqa: F401  (filters of compressed frames)
import numpy as np

LEGITIMATE_VALUES = frozenset({"start_time", "end_time", "date", "file_time", "file_update_time"})
LEGITIMATE_ATTRS = frozenset({"file_time", "file_update_time", "HDF5_Version", "h5py_version", "creator_version",
                              "writer_version"})
LEGITIMATE_ROOT_ATTRS = frozenset({"writer"})  # nxpar names itself at the root; the reference does not
SMALL = 64  # values of at most this many elements are shown; larger ones by digest


class Kind(enum.Enum):
    GROUP = "group"
    DATASET = "dataset"
    SOFT_LINK = "soft link"
    EXTERNAL_LINK = "external link"


@dataclass(frozen=True)
class Node:
    """One path of an entry, as compared."""
    kind: Kind
    attrs: tuple[tuple[str, str], ...] = ()
    shape: str = ""
    dtype: str = ""
    value: str = ""  # a dataset's value (or `<data of CHANNEL>`); a link's target
    storage: str = ""  # chunks, compression, filters, fill value: reported, never a difference


@dataclass
class Difference:
    path: str
    aspect: str  # "only in reference", "only in nxpar", "kind", "target", "attr NAME", "shape", "dtype", "value"
    nxpar: str = ""
    reference: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.aspect}: nxpar {self.nxpar!s} / reference {self.reference!s}"


@dataclass
class EntryView:
    """How paths are normalised for one file: its run's directory, its run's published channels and
    the place BLISS gave each (`homes`: path in the entry → channel; BLISS's HDF5 fallback paths, the
    reference's mapping), which decides between channels that published the same values."""
    run_dir: str
    published: dict[str, np.ndarray] = field(default_factory=dict)
    homes: dict[str, str] = field(default_factory=dict)

    def text(self, value) -> str:
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        return str(value).replace(self.run_dir, "<run>")


def describe(f: h5py.File, entry: str, view: EntryView) -> dict[str, Node]:
    """Every path under /<entry> (relative to it) → Node; '.' is the entry group itself."""
    out: dict[str, Node] = {".": _group(f[entry], view)}
    _walk(f[entry], "", view, out)
    return out


def _walk(group: h5py.Group, prefix: str, view: EntryView, out: dict[str, Node]) -> None:
    for name in group:
        path = f"{prefix}{name}"
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink):
            out[path] = Node(Kind.SOFT_LINK, value=view.text(link.path))
        elif isinstance(link, h5py.ExternalLink):
            out[path] = Node(Kind.EXTERNAL_LINK, value=f"{view.text(link.filename)}::{link.path}")
        else:
            obj = group[name]
            if isinstance(obj, h5py.Group):
                out[path] = _group(obj, view)
                _walk(obj, f"{path}/", view, out)
            else:
                out[path] = _dataset(obj, path, view)


def _attrs(obj, view: EntryView) -> tuple[tuple[str, str], ...]:
    items = []
    for key in sorted(obj.attrs):
        if key in LEGITIMATE_ATTRS:
            continue
        value = obj.attrs[key]
        if isinstance(value, np.ndarray):
            value = [view.text(v) for v in value.ravel().tolist()]
        items.append((key, view.text(value)))
    return tuple(items)


def _group(group: h5py.Group, view: EntryView) -> Node:
    return Node(Kind.GROUP, attrs=_attrs(group, view))


def _dtype(ds: h5py.Dataset) -> str:
    info = h5py.check_string_dtype(ds.dtype)
    if info is not None:
        return f"string ({info.encoding})"  # fixed or variable length: the same text to a reader
    return ds.dtype.str


def _storage(ds: h5py.Dataset) -> str:
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    fill = np.asarray(ds.fillvalue).tolist()
    return f"chunks={ds.chunks} filters={filters} fill={fill!r}"


def _dataset(ds: h5py.Dataset, path: str, view: EntryView) -> Node:
    value = ds[()]
    shape = str(ds.shape)
    if path.rpartition("/")[2] in LEGITIMATE_VALUES:
        text = "<time>"
    elif h5py.check_string_dtype(ds.dtype) is not None or isinstance(value, bytes):
        text = view.text(value if not isinstance(value, np.ndarray) else [view.text(v) for v in value.ravel()])
    else:
        channel = published_channel(np.asarray(value), view.published, view.homes.get(path))
        if channel:
            text = f"<data of {channel[0]}>"
            shape = "published" if channel[1] else shape
        else:
            text = _numbers(np.asarray(value))
    return Node(Kind.DATASET, _attrs(ds, view), shape, _dtype(ds), text, _storage(ds))


def _numbers(value: np.ndarray) -> str:
    if value.dtype.kind not in "biufc":
        return repr(value.tolist())[:200]
    if value.size <= SMALL:
        return repr(value.tolist())
    return f"sha1:{hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()[:12]}"


def published_channel(value: np.ndarray, published: dict[str, np.ndarray],
                      home: str | None = None) -> tuple[str, bool] | None:
    """(channel, same shape) of the channel whose published data `value` holds: the one BLISS placed
    here (`home`) if it does, else the first by name (arrays only: a scalar dataset is metadata,
    compared value for value)."""
    if value.ndim == 0 or value.size == 0 or value.dtype.kind not in "biuf":
        return None
    for name in ([home] if home in published else []) + sorted(published):
        data = published[name]
        if data.dtype.kind in "biuf" and _holds(value, data):
            return name, value.shape == data.shape
    return None


def _holds(value: np.ndarray, data: np.ndarray) -> bool:
    if value.size == data.size:
        return bool(np.array_equal(value.ravel(), data.ravel(), equal_nan=value.dtype.kind == "f"))
    if value.ndim == data.ndim == 2 and value.shape[0] == data.shape[0] and value.shape[1] > data.shape[1]:
        width = data.shape[1]  # variable-length rows padded with NaN up to the longest
        return bool(np.array_equal(value[:, :width], data, equal_nan=True) and np.isnan(value[:, width:]).all())
    return False


def compare(nxpar: dict[str, Node], reference: dict[str, Node]) -> tuple[list[Difference], list[Difference]]:
    """(differences, storage notes) between two described entries."""
    differences: list[Difference] = []
    storage: list[Difference] = []
    for path in sorted(set(nxpar) | set(reference)):
        a, b = nxpar.get(path), reference.get(path)
        if a is None or b is None:
            where = "only in reference" if a is None else "only in nxpar"
            differences.append(Difference(path, where, _brief(a), _brief(b)))
            continue
        differences += _compare_node(path, a, b)
        if a.storage != b.storage:
            storage.append(Difference(path, "storage", a.storage, b.storage))
    return differences, storage


def _compare_node(path: str, a: Node, b: Node) -> list[Difference]:
    if a.kind != b.kind:
        return [Difference(path, "kind", _brief(a), _brief(b))]
    out = []
    if a.kind in (Kind.SOFT_LINK, Kind.EXTERNAL_LINK) and a.value != b.value:
        out.append(Difference(path, "target", a.value, b.value))
    attrs_a, attrs_b = dict(a.attrs), dict(b.attrs)
    for key in sorted(set(attrs_a) | set(attrs_b)):
        if attrs_a.get(key) != attrs_b.get(key):
            out.append(Difference(path, f"attr {key}", attrs_a.get(key, "(none)"), attrs_b.get(key, "(none)")))
    for aspect in ("shape", "dtype", "value"):
        if a.kind == Kind.DATASET and getattr(a, aspect) != getattr(b, aspect):
            out.append(Difference(path, aspect, getattr(a, aspect), getattr(b, aspect)))
    return out


def _brief(node: Node | None) -> str:
    if node is None:
        return "(absent)"
    if node.kind in (Kind.SOFT_LINK, Kind.EXTERNAL_LINK):
        return f"{node.kind.value} → {node.value}"
    if node.kind == Kind.DATASET:
        return f"dataset {node.shape} {node.dtype}"
    return node.kind.value


def compare_root(nxpar: h5py.File, reference: h5py.File, views: tuple[EntryView, EntryView]) -> list[Difference]:
    """The files' root attributes (NX_class, creator, default, ...), times and versions left out."""
    a, b = dict(_attrs(nxpar, views[0])), dict(_attrs(reference, views[1]))
    return [Difference("/", f"attr {k}", a.get(k, "(none)"), b.get(k, "(none)"))
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in LEGITIMATE_ROOT_ATTRS]
