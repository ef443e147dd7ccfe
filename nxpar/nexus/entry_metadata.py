"""The metadata nodes of one NXentry from scan_info (docs/interface.md §4.2): the positioner snapshots
(`instrument/positioners_start`, `_dial_start`, `_end`, `_dial_end` and `instrument/positioners`), the
user metadata categories (`scan_meta_categories`), the ESRF sample (`esrf_metadata.py`) and the notes
(the scan's comments).

The snapshots taken at the start are written with the skeleton; the end snapshots, and the metadata
again from the final scan_info, at finalisation. Pure logic: `Node` lists, no I/O.
"""
from __future__ import annotations

from typing import Any

from ..protocol.steps import Node, NodeOp
from .channel_mapping import normalise
from .esrf_metadata import sample_tree
from .nodes import dict_to_nodes, scalar

SKIPPED_CATEGORIES = ("positioners", "nexuswriter")  # written by the plan itself, not as metadata groups


def start_metadata(info: dict[str, Any], e: str, device_groups: set[str]) -> list[Node]:
    """Entry `e`'s metadata when the file is created: start snapshots (also as `instrument/positioners`),
    the user metadata and the sample. `device_groups`: the normalised names of the scan's device groups."""
    return (positioner_snapshots(info, e, ("start", "dial_start"), also_positioners=True)
            + user_metadata(info, e, device_groups)
            + sample_metadata(info, e))


def end_metadata(info: dict[str, Any], e: str, device_groups: set[str]) -> list[Node]:
    """Entry `e`'s metadata at finalisation, from the final scan_info: end snapshots, user metadata, sample."""
    return (positioner_snapshots(info, e, ("end", "dial_end"), overwrite=True)
            + user_metadata(info, e, device_groups)
            + sample_metadata(info, e))


def positioner_snapshots(info: dict[str, Any], e: str, kinds: tuple[str, ...], also_positioners: bool = False,
                         overwrite: bool = False) -> list[Node]:
    """`instrument/positioners_<kind>` (NXcollection) of every kind scan_info has, with the units."""
    pos = info.get("positioners") or {}
    units = pos.get("positioners_units") or {}
    nodes: list[Node] = []
    for kind in kinds:
        values = pos.get(f"positioners_{kind}")
        if not isinstance(values, dict):
            continue
        targets = [f"{e}/instrument/positioners_{kind}"]
        if also_positioners and kind == "start":
            targets.append(f"{e}/instrument/positioners")
        for group in targets:
            nodes.append(Node(NodeOp.GROUP, group, attrs={"NX_class": "NXcollection"}))
            for motor, value in values.items():
                attrs = {"units": units[motor]} if units.get(motor) else {}
                nodes.append(Node(NodeOp.VALUE, f"{group}/{normalise(motor)}", scalar(value), attrs=attrs,
                                  overwrite=overwrite and group.endswith(kind)))
    return nodes


def user_metadata(info: dict[str, Any], e: str, device_groups: set[str]) -> list[Node]:
    """Each category of `scan_meta_categories` as a group of the entry (or a value); the `instrument`
    category's dictionaries go into `instrument/`, as NXdetector where a device group has that name."""
    nodes: list[Node] = []
    for category in info.get("scan_meta_categories", []):
        if category in SKIPPED_CATEGORIES or category not in info:
            continue
        value = info[category]
        if not isinstance(value, dict):
            nodes.append(Node(NodeOp.VALUE, f"{e}/{normalise(category)}", scalar(value), overwrite=True))
            continue
        if set(value) <= {"@NX_class", "NX_class"}:
            continue
        if category == "instrument":
            for key, sub in value.items():
                if isinstance(sub, dict):
                    nx = "NXdetector" if normalise(key) in device_groups else None
                    nodes += dict_to_nodes(f"{e}/instrument/{normalise(key)}", sub, nx)
            continue
        nodes += dict_to_nodes(f"{e}/{normalise(category)}", value)
    return nodes


def sample_metadata(info: dict[str, Any], e: str) -> list[Node]:
    """The ESRF sample metadata (data policy ESRF only, `esrf_metadata.sample_tree`)."""
    nodes: list[Node] = []
    for key, value in sample_tree(info).items():
        if isinstance(value, dict):
            nodes += dict_to_nodes(f"{e}/{normalise(key)}", value)
        else:
            nodes.append(Node(NodeOp.VALUE, f"{e}/{normalise(key)}", scalar(value), overwrite=True))
    return nodes


def notes(info: dict[str, Any], e: str) -> list[Node]:
    """`notes/note_<i>` (NXnote) for each of the scan's comments, none without comments."""
    comments = info.get("comments") or []
    if not comments:
        return []
    nodes = [Node(NodeOp.GROUP, f"{e}/notes", attrs={"NX_class": "NXcollection"})]
    for i, c in enumerate(comments, 1):
        n = f"{e}/notes/note_{i:02d}"
        nodes += [Node(NodeOp.GROUP, n, attrs={"NX_class": "NXnote"}),
                  Node(NodeOp.VALUE, f"{n}/data", str(c.get("message", ""))),
                  Node(NodeOp.VALUE, f"{n}/type", "text/plain"),
                  Node(NodeOp.VALUE, f"{n}/date", str(c.get("date", "")))]
    return nodes
