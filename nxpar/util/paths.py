"""Where scan metadata may make the service write, read and link: the allowed roots (device property
`allowed_roots`, `NexusWriterBatch --allowed-roots`) and the one check every such path passes.

A path is allowed when its real path is one of the roots or below one: symlinks resolved
(`os.path.realpath`: for a path not created yet, its nearest existing parent resolved and the rest
appended). Roots unset: everywhere but the system directories (`SYSTEM_DIRS`), and the service says so
with a WARNING at start-up. For a path the service creates (scan file, master files, `makedirs`), every
directory made on the way is checked too (with '..' in a path it could lie elsewhere). A symlink
replaced between the check and the use is not seen (the check is made just before the use).
docs/allowed_roots.md is the operator's side.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Iterable

log = logging.getLogger("nxpar.paths")

# Refused while allowed_roots is unset: nxpar never writes, reads or links there (their real paths too)
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
               "/sbin", "/sys", "/usr", "/var/cache", "/var/lib", "/var/log", "/var/mail", "/var/spool")
SEPARATORS = re.compile(r"[,:\n]")  # between the roots of one property line / option value


class PathRefused(ValueError):
    """A path outside the allowed roots; the message names the path, where it resolves and the roots."""


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _directories_made(path: str) -> list[str]:
    """The real paths of the directories `os.makedirs(dirname(path))` would make (those that do not
    exist): with '..' in a path they need not lie below its real path."""
    made, prefix = [], "/"
    for part in os.path.dirname(path).split("/"):
        prefix = os.path.join(prefix, part)
        real = os.path.realpath(prefix)
        if part and not os.path.exists(real) and real not in made:
            made.append(real)
    return made


def split_roots(values: Iterable[str] | str | None) -> tuple[list[str], list[str]]:
    """(absolute directories, entries that are not) of a property / option: one root per item, or
    several in one item separated by ',' or ':'; empty items are ignored."""
    if isinstance(values, str):
        values = [values]
    entries = [e.strip() for v in values or () for e in SEPARATORS.split(str(v)) if e.strip()]
    good = [os.path.normpath(e) for e in entries if os.path.isabs(e)]
    return good, [e for e in entries if not os.path.isabs(e)]


@dataclass(frozen=True)
class PathPolicy:
    """The allowed roots. None: unset (everywhere but SYSTEM_DIRS); (): nothing is allowed."""

    roots: tuple[str, ...] | None = None

    @property
    def unset(self) -> bool:
        return self.roots is None

    def describe(self) -> str:
        if self.roots is None:
            return ("allowed_roots is unset: scan metadata may make nxpar write, read and link anywhere but in the "
                    f"system directories ({' '.join(SYSTEM_DIRS)}); set it to the beamline's data directories")
        return f"allowed roots: {self.shown_roots()}"

    def shown_roots(self) -> str:
        if self.roots is None:
            return f"unset: anywhere but {' '.join(SYSTEM_DIRS)}"
        return ", ".join(self.roots) if self.roots else "none (allowed_roots holds no absolute directory)"

    def refusal(self, path: object, created: bool = False) -> str:
        """'' when `path` is allowed, else why not (naming the path, its real path and the roots).
        created: the service creates it: every directory made on the way must be allowed too."""
        if not isinstance(path, str) or not path:
            return f"{path!r} is not a path"
        if not os.path.isabs(path):
            return f"{path} is not an absolute path"
        try:
            real = os.path.realpath(path)
            made = _directories_made(path) if created else []
        except (ValueError, OSError) as e:  # an embedded NUL
            return f"{path!r} cannot be resolved ({e})"
        shown = path if real == path else f"{path} (real path {real})"
        where = self._outside(real)
        if where:
            return f"{shown} is {where}"
        where, directory = next(((self._outside(d), d) for d in made if self._outside(d)), ("", ""))
        return f"{path} would make the directory {directory}, {where}" if where else ""

    def _outside(self, real: str) -> str:
        """'' when the real path is allowed, else where it is ('outside the allowed roots (…)')."""
        if self.roots is None:
            system = next((d for d in SYSTEM_DIRS if _within(real, d) or _within(real, os.path.realpath(d))), None)
            return f"in the system directory {system} (allowed_roots: {self.shown_roots()})" if system else ""
        if any(_within(real, os.path.realpath(root)) for root in self.roots):
            return ""
        return f"outside the allowed roots ({self.shown_roots()})"

    def check(self, path: object, what: str, created: bool = False) -> None:
        """Raise PathRefused('<what>: <why>') unless `path` is allowed."""
        reason = self.refusal(path, created)
        if reason:
            raise PathRefused(f"{what}: {reason}")


def policy_for(owner: str, values: Iterable[str] | str | None) -> PathPolicy:
    """The policy of a device property / command-line option, said once in the log: a WARNING when
    unset; entries that are not absolute directories are left out with an ERROR (never widening what
    is allowed: if none is left, nothing is)."""
    roots, bad = split_roots(values)
    if bad:
        log.error("%s: allowed_roots entries that are not absolute directories are ignored: %s", owner,
                  ", ".join(repr(b) for b in bad))
    policy = PathPolicy(tuple(roots)) if roots or bad else PathPolicy()
    (log.warning if policy.unset or not policy.roots else log.info)("%s: %s", owner, policy.describe())
    return policy
