"""ALL WRITER RANKS: the agreement that follows a step's local work, and the failure it raises.

Work that can fail on one rank only (reading Redis, creating directories, a free-space check) is
followed by `agree`, so that every writer rank raises `StepFailed` together, or none does, before
any rank enters a collective HDF5 call.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from mpi4py import MPI

from ..protocol.mpi_roles import sleepy_allreduce_max_all


class StepFailed(RuntimeError):
    """A step failed on at least one writer rank; all ranks raise it together. `partial`: it failed on
    some ranks only, after a collective HDF5 call: the ranks' views of the file may differ since."""

    def __init__(self, message: str, partial: bool = False) -> None:
        super().__init__(message)
        self.partial = partial


class Diverged(StepFailed):
    """A collective HDF5 call failed on some writer ranks only: the ranks' views of that file (its
    metadata, its end of file) differ from now on, and nothing more may be written to it."""


T = TypeVar("T")


def agree(comm: MPI.Intracomm, error: str, flags: list[int] | None = None) -> list[int]:
    """Collective: raise StepFailed on every rank if any rank had an error; else the max over
    the ranks of each of `flags` (the same length on every rank), in the same reduction."""
    if comm.size == 1:  # one writer process: nobody to agree with
        if error:
            raise StepFailed(error)
        return list(flags or [])
    agreed = sleepy_allreduce_max_all(comm, [1 if error else 0] + list(flags or []))
    if not agreed[0]:
        return agreed[1:]
    errors = comm.allgather(error)
    failed = [f"rank {r}: {e}" for r, e in enumerate(errors) if e]
    if failed:
        raise StepFailed("; ".join(failed) if len(set(errors) - {""}) > 1 else next(e for e in errors if e),
                         partial=len(failed) < len(errors))
    return agreed[1:]


def collectively(comm: MPI.Intracomm, what: str, call: Callable[[], T]) -> T:
    """COLLECTIVE: call() (a collective HDF5 call) on every rank, then an agreement, so that a call that
    failed on some ranks only (ENOSPC seen by the rank that writes the metadata, a file gone on one
    node) fails the step on every rank before any rank goes on to the next collective call."""
    error, result = "", None
    try:
        result = call()
    except StepFailed as e:  # a failure the step means (an entry that exists): its own words
        error = str(e)
    except Exception as e:
        error = f"{what}: {e}"
    try:
        agree(comm, error)
    except StepFailed as e:
        if e.partial:  # some ranks did the call, others did not: their views of the file differ from now on
            raise Diverged(str(e), partial=True) from e
        raise
    return result  # type: ignore[return-value]
