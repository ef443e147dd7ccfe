"""The JSON every benchmark writes: one `Document` per command (its exact command line, the machine,
the commit, the CPU slices, every measured run), and the statistics the tables are made of.

A document is the only source of the figures in perf/RESULTS.md and perf/SCALING.md: the tables
there are regenerated from it (perf/report/), never typed in.
"""
from __future__ import annotations

import datetime
import enum
import json
import os
import platform
import shlex
import statistics
import subprocess
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "perf" / "results"  # what the documents' tables come from (tracked)
SCRATCH = ROOT / "perf" / "out"  # ad-hoc runs (ignored by git)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def machine() -> dict[str, Any]:
    """Where the figures were measured: host, cores, CPU model, kernel, MPI and HDF5 versions."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {"host": platform.node(), "cores": os.cpu_count(), "cpu": model,
           "kernel": f"{platform.system()} {platform.release()}", "python": platform.python_version()}
    try:
        import h5py
        from mpi4py import MPI

        out["hdf5"] = h5py.version.hdf5_version
        out["mpi"] = MPI.Get_library_version().splitlines()[0].strip()
    except Exception as e:  # noqa: BLE001 - versions are informative only
        out["versions"] = f"unknown ({e})"
    return out


def commit() -> str:
    """The commit measured, with '+dirty' when the working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def command_line(argv: list[str]) -> str:
    return "python -m perf " + shlex.join(argv)


def _encode(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def _plain(value: Any) -> Any:
    """JSON's own types all the way down (dataclasses, enums, numpy scalars, paths converted)."""
    return json.loads(json.dumps(value, default=_encode))


@dataclass
class Document:
    """One benchmark command's results: `runs` are the raw measurements (one dict each, with a
    `kind`), `params` the options it ran with."""

    scenario: str
    command: str
    params: dict[str, Any]
    slices: dict[str, Any] | None = None
    machine: dict[str, Any] = field(default_factory=machine)
    commit: str = field(default_factory=commit)
    started: str = field(default_factory=now)
    finished: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, **values: Any) -> dict[str, Any]:
        run = {"kind": kind, **{k: _plain(v) for k, v in values.items()}}
        self.runs.append(run)
        return run

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """The runs of one kind whose fields equal `match`."""
        return [r for r in self.runs if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())]

    def write(self, path: Path) -> None:
        self.finished = now()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1, default=_encode) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Document":
        return cls(**json.loads(Path(path).read_text()))


def default_path(scenario: str) -> Path:
    return SCRATCH / f"{scenario}.json"


@dataclass(frozen=True)
class Spread:
    """Median (min-max) of repeated measurements."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> "Spread":
        vals = [float(v) for v in values]
        if not vals:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(vals), min(vals), max(vals), len(vals))

    def text(self, digits: int = 0) -> str:
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def median(values: Iterable[float]) -> float:
    return Spread.of(values).median
