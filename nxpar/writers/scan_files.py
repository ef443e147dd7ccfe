"""ALL WRITER RANKS: the scan files this rank holds open — opened, flushed and closed together, and
checked to be still the files the scans were opened in.

Every method is collective over the writer communicator. Decisions are taken on one rank and shared
(does the file exist: the first writer rank, broadcast), or taken on every rank and agreed on (is the
file at the path still ours), so no rank enters a collective call another skips. A file deleted or
replaced while a scan writes it (the ranks would go on writing into an unlinked inode) fails the
scan's next flush and its close, with a reason saying so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import h5py
from mpi4py import MPI

from ..protocol import steps as st
from .agreement import StepFailed, agree, collectively
from .file_access import open_scan_file
from .tree import apply_nodes, library_versions, set_root_attrs

FINISHED = (b"SUCCEEDED", b"FAILED")


@dataclass
class SharedFile:
    """One open handle per path: consecutive scans of a dataset often overlap in the same file."""

    file: h5py.File
    path: str
    identity: tuple[int, int]  # (st_dev, st_ino) of the path when it was opened
    users: int = 0


def identity_of(path: str) -> tuple[int, int]:
    st_ = os.stat(path)
    return st_.st_dev, st_.st_ino


class ScanFiles:
    def __init__(self, comm: MPI.Intracomm, write_mode: Any) -> None:
        self.comm = comm
        self.write_mode = write_mode
        self.open_files: dict[str, SharedFile] = {}  # real path -> handle
        self.scan_files: dict[str, str] = {}  # scan id -> real path
        self.diverged: dict[str, str] = {}  # real path -> the failure after which the ranks' views differ
        self.abandoned: list[SharedFile] = []  # diverged files: never closed collectively (it would hang)

    def file(self, scan_id: str) -> h5py.File:
        """The scan's open file, to write to; StepFailed (on every rank alike) once its views diverged."""
        key = self.scan_files.get(scan_id)
        if key in self.diverged:
            raise StepFailed(f"nothing more is written to {self.open_files[key].path}: the writer ranks' views of "
                             f"it differ since a step failed on some of them only ({self.diverged[key]})")
        return self.shared(scan_id).file

    def diverge(self, scan_id: str, failure: str) -> None:
        """After a Diverged failure (every rank calls it, the failure being agreed)."""
        key = self.scan_files.get(scan_id)
        if key is not None:
            self.diverged.setdefault(key, failure)

    def shared(self, scan_id: str) -> SharedFile:
        try:
            return self.open_files[self.scan_files[scan_id]]
        except KeyError:
            raise StepFailed(f"no open file for scan {scan_id}") from None

    # -- open ----------------------------------------------------------------------------------------
    def open(self, step: st.OpenFile) -> None:
        """COLLECTIVE: the scan's file, opened or created; its entries must not exist yet, unless the
        step replaces them (a scan written again after an interruption: what the dead run left goes)."""
        if step.scan_id in self.scan_files:
            raise StepFailed(f"scan {step.scan_id} already has an open file")
        key = os.path.realpath(step.path)
        shared = self.open_files.get(key) or self._open_new(step.path)
        try:
            collectively(self.comm, f"entries of {step.path}", lambda: self._prepare_entries(shared, step))
        except StepFailed:
            if shared.users == 0:
                collectively(self.comm, f"closing {step.path}", shared.file.close)
            raise
        shared.users += 1
        self.open_files[key] = shared
        self.scan_files[step.scan_id] = key

    def _open_new(self, path: str) -> SharedFile:
        f = collectively(self.comm, f"Cannot open {path}",
                         lambda: open_scan_file(path, self.comm, self.write_mode.serial))
        try:
            identity = identity_of(path)
            error = ""
        except OSError as e:
            identity, error = (0, 0), f"{path} is gone right after it was opened: {e}"
        agree(self.comm, error)
        return SharedFile(f, path, identity)

    @staticmethod
    def _prepare_entries(shared: SharedFile, step: st.OpenFile) -> None:
        existing = [name for name in step.entries if name in shared.file]
        if existing and not step.replace_entries:
            raise StepFailed(f"Scan {existing[0]} already exists in {step.path}")
        for name in existing:  # the same on every rank (collective metadata), in the same order
            del shared.file[name]
        set_root_attrs(shared.file, {**step.root_attrs, **library_versions()})

    # -- identity, flush, close ---------------------------------------------------------------------------
    @staticmethod
    def identity_error(shared: SharedFile) -> str:
        """LOCAL: '' while the path still names the file opened, else what happened to it."""
        try:
            now = identity_of(shared.path)
        except FileNotFoundError:
            return (f"the scan file {shared.path} was deleted while the scan was being written: "
                    "what was written since it was opened is lost")
        except OSError as e:
            return f"the scan file {shared.path} cannot be checked ({e})"
        if now != shared.identity:
            return (f"the scan file {shared.path} was replaced by another file while the scan was being "
                    "written: the scan's data went to the file that was there before")
        return ""

    def flush(self, scan_id: str, local_error: str = "") -> None:
        """COLLECTIVE: the scan's file flushed to disk, if it is still the file at its path."""
        shared = self.shared(scan_id)
        agree(self.comm, local_error or self.identity_error(shared))
        collectively(self.comm, f"flushing {shared.path}", lambda: self.write_mode.flush(shared.file))

    def close(self, scan_id: str) -> None:
        """COLLECTIVE: the scan lets its file go (closed when no other scan uses it); fails afterwards if
        the file at the path is no longer the one written."""
        key = self.scan_files.pop(scan_id, None)
        if key is None:
            return
        shared = self.open_files[key]
        shared.users -= 1
        error = self.identity_error(shared)
        if shared.users > 0:
            collectively(self.comm, f"flushing {shared.path}", lambda: self.write_mode.flush(shared.file))
        elif key in self.diverged:  # a collective close would hang: the handle is abandoned (the job restarts)
            self.abandoned.append(self.open_files.pop(key))
            error = error or f"{shared.path} abandoned: its writer ranks diverged ({self.diverged.pop(key)})"
        else:
            del self.open_files[key]
            collectively(self.comm, f"closing {shared.path}", shared.file.close)
        agree(self.comm, error)

    # -- a file a dead job left behind ----------------------------------------------------------------------
    def mark_failed(self, step: st.MarkFailed) -> None:
        """COLLECTIVE: the unfinished entries of a file get status FAILED, end_time and the reason; a file
        that is gone is made again with just those (create_missing), so that the path says what happened.
        A few metadata nodes in a closed file: the first rank alone, with the serial driver, then an
        agreement (a collective MPI-IO open, overwrite and close of a file h5py made serially hung
        now and then in the collective close, HDF5 1.10.8 + MPICH: tests/mpi)."""
        exists = self.comm.bcast(os.path.exists(step.path) if self.comm.rank == 0 else None, root=0)
        if not exists and not step.create_missing:
            return
        if os.path.realpath(step.path) in self.open_files:
            raise StepFailed(f"{step.path} is open for writing")
        error = ""
        if self.comm.rank == 0:
            try:
                self._mark_failed_alone(step)
            except Exception as e:
                error = f"marking {step.path} FAILED: {e}"
        agree(self.comm, error)

    def _mark_failed_alone(self, step: st.MarkFailed) -> None:
        f = open_scan_file(step.path, MPI.COMM_SELF, serial=True)
        try:
            apply_nodes(f, self._failed_nodes(f, step))
        finally:
            f.close()

    @staticmethod
    def _failed_nodes(f: h5py.File, step: st.MarkFailed) -> list[st.Node]:
        nodes: list[st.Node] = []
        for entry in step.entries:
            status = f.get(f"{entry}/writer/status")
            if status is not None and status[()] in FINISHED:
                continue
            if entry not in f:
                nodes += [st.Node(st.NodeOp.GROUP, f"/{entry}", attrs={"NX_class": "NXentry"}),
                          st.Node(st.NodeOp.GROUP, f"/{entry}/writer", attrs={"NX_class": "NXnote"})]
            nodes += [st.Node(st.NodeOp.VALUE, f"/{entry}/writer/status", "FAILED", overwrite=True),
                      st.Node(st.NodeOp.VALUE, f"/{entry}/writer/failure", step.reason, overwrite=True),
                      st.Node(st.NodeOp.VALUE, f"/{entry}/end_time", step.end_time, overwrite=True)]
        return nodes

    def close_all(self) -> None:
        """COLLECTIVE: every file still open (service shutdown)."""
        for scan_id in sorted(self.scan_files):
            self.close(scan_id)
