"""RANK 0 ONLY: the paths a scan's metadata names, checked against the allowed roots (`util.paths.PathPolicy`,
carried by `SaveOptions.paths`) before anything is created, read or linked there.

* The plan's paths (`checked_scan_file`, called by the ScanDriver before OpenFile): the scan file (from
  `filename`, or `images_path` with `separate_scan_files`), the master files (`nexuswriter.masterfiles`,
  an h5map's other files) and the files their static nodes link (external links, virtual and external
  datasets of an h5map). One outside the roots: the scan FAULTs (PathRefused names the path and the
  roots) and nothing is made — no file, no directory.
* Detector files (`DetectorFiles`, one per scan): Lima frames (references, virtual datasets, EDF external
  files, copies), Lima2 master and receivers' files, Mosca files, each checked before nxpar reads or
  links it. One outside the roots: that channel is refused — a warning, nothing more of it read or
  linked, the rest of the scan written (one detector path must not cost the scan's data).
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from ..nexus.file_plan import FilePlan
from ..protocol.steps import Node, NodeOp
from ..util.paths import PathPolicy, PathRefused

__all__ = ["DetectorFiles", "PathRefused", "checked_scan_file", "node_files", "nodes_inside", "policy_of"]


def policy_of(plan: Any) -> PathPolicy:
    """The policy of the options a plan was made with (both plans keep them)."""
    policy = getattr(getattr(plan, "options", None), "paths", None)
    return policy if isinstance(policy, PathPolicy) else PathPolicy()


def node_files(nodes: Iterable[Node], file_path: str) -> list[str]:
    """The other files that nodes going into `file_path` link or read: absolute, a relative name taken
    from the directory of `file_path` (as HDF5 resolves it); '.' (the file itself) left out."""
    base = os.path.dirname(file_path)
    names: list[str] = []
    for node in nodes:
        if node.op == NodeOp.EXTLINK:
            names.append(node.target_file)
        elif node.op in (NodeOp.VDS, NodeOp.VDS_MAP):
            names += [source[0] for source in node.value["sources"]]
        elif node.op == NodeOp.EXTERNAL:
            names += [entry[0] for entry in node.value["files"]]
    return list(dict.fromkeys(os.path.join(base, str(n)) for n in names if n not in ("", ".")))


def checked_scan_file(plan: FilePlan, policy: PathPolicy) -> str:
    """The plan's scan file once every path of the plan is inside the roots; else PathRefused for the
    first one that is not (called before anything is made)."""
    policy.check(plan.filename, "scan file", created=True)
    for path in node_files(plan.skeleton(), plan.filename):
        policy.check(path, f"file linked from the scan file {plan.filename}")
    for path, nodes in plan.master_links().items():
        policy.check(path, "master file", created=True)
        for linked in node_files(nodes, path):
            policy.check(linked, f"file linked from the master file {path}")
    return plan.filename


def nodes_inside(nodes: list[Node], file_path: str, policy: PathPolicy) -> tuple[list[Node], list[str]]:
    """(the nodes whose linked files are all inside the roots, why each other one is left out): for
    nodes made once the file exists (an h5map as completed at the scan's end), where a FAULT would come
    too late to keep anything from being made."""
    kept, refused = [], []
    for node in nodes:
        reason = next((r for r in map(policy.refusal, node_files([node], file_path)) if r), "")
        if reason:
            refused.append(f"{node.path} not written: {reason}")
        else:
            kept.append(node)
    return kept, refused


class DetectorFiles:
    """The detector files of one scan, checked before they are read or linked. A file found inside the
    roots is not looked at again; one that does not exist yet is (it may appear as a symlink)."""

    def __init__(self, policy: PathPolicy) -> None:
        self.policy = policy
        self._allowed: set[str] = set()

    def refusal(self, paths: Iterable[str]) -> str:
        """'' when every path is inside the roots, else why the first one that is not is refused."""
        for path in dict.fromkeys(paths):
            if path in self._allowed:
                continue
            reason = self.policy.refusal(path)
            if reason:
                return reason
            if os.path.lexists(path):
                self._allowed.add(path)
        return ""
