"""Node lists shared by both plans: writer status, root attributes, dictionaries as NeXus groups."""
from __future__ import annotations

from typing import Any

from ..protocol.steps import Node, NodeOp
from .channel_mapping import normalise
from .scan_info import now_iso


def status_nodes(entries: list[str], status: str) -> list[Node]:
    return [Node(NodeOp.VALUE, f"/{e}/writer/status", status, overwrite=True) for e in entries]


def failure_nodes(entries: list[str], reason: str) -> list[Node]:
    """Why the writer failed the scan (`writer/failure`), beside its FAILED status."""
    return [Node(NodeOp.VALUE, f"/{e}/writer/failure", reason, overwrite=True) for e in entries]


def failed_nodes(entries: list[str], reason: str) -> list[Node]:
    """Status FAILED, the reason and end_time only: the scan ends without (or after a failed) finalisation."""
    return (status_nodes(entries, "FAILED") + failure_nodes(entries, reason)
            + [Node(NodeOp.VALUE, f"/{e}/end_time", now_iso(), overwrite=True) for e in entries])


def note_nodes(entries: list[str], name: str, text: str) -> list[Node]:
    """A note in each entry's writer group (e.g. `writer/interruption`: a scan written again)."""
    return [Node(NodeOp.VALUE, f"/{e}/writer/{name}", text, overwrite=True) for e in entries]


def root_attrs(scan_info: dict[str, Any], filename: str, blissdata_version: str) -> dict[str, Any]:
    """NXroot attributes, set when a file is first created (the writer ranks add the HDF5 and h5py
    versions they write with: writers/tree.py `library_versions`)."""
    return {"NX_class": "NXroot", "file_time": now_iso(), "file_name": filename,
            "creator": "blissdata", "create_version": blissdata_version,
            "publisher": scan_info.get("publisher", "bliss"),
            "publisher_version": str(scan_info.get("publisher_version", "")),
            "writer": "nxpar"}


def scalar(value: Any) -> Any:
    """A value HDF5 can store as a small dataset: nested containers become their text."""
    if isinstance(value, (dict,)):
        return str(value)
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return str(value)
    return value


def dict_to_nodes(path: str, d: dict[str, Any], nx_class: str | None = None) -> list[Node]:
    """silx dicttonx conventions: 'name@attr' keys are attributes, dicts are groups (NXcollection)."""
    attrs = {}
    children: list[Node] = []
    for key, value in d.items():
        if key in ("NX_class", "@NX_class"):
            attrs["NX_class"] = value
        elif key.startswith("@"):
            attrs[key[1:]] = value
        elif "@" in key:
            name, attr = key.split("@", 1)
            children.append(Node(NodeOp.ATTRS, f"{path}/{normalise(name)}", attrs={attr: value}))
        elif isinstance(value, dict):
            children = dict_to_nodes(f"{path}/{normalise(key)}", value) + children
        else:
            children.insert(0, Node(NodeOp.VALUE, f"{path}/{normalise(key)}", scalar(value), overwrite=True))
    attrs.setdefault("NX_class", nx_class or "NXcollection")
    # attributes on children must come after the children exist
    values = [n for n in children if n.op != NodeOp.ATTRS]
    later = [n for n in children if n.op == NodeOp.ATTRS]
    return [Node(NodeOp.GROUP, path, attrs=attrs)] + values + later
