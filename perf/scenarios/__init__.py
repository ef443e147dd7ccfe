"""The benchmarks, one module each, run by `python -m perf <name>` (perf/__main__.py).

A scenario module has a docstring (its first line is its help), `add_arguments(parser)` and
`run(args, doc, slices)`, which records every measurement in `doc` (perf/core/results.py);
`SLICES = True` when it can run in CPU slices (`--slices`). Its tables are drawn from the JSON by
perf/report/tables.py, never by the scenario itself.
"""
from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("frames", "ab", "points", "mosca", "timeline", "profile", "stages", "scaling", "emulation",
         "replay", "write_paths", "file_copy", "redis_threads")


def load(name: str) -> ModuleType:
    return importlib.import_module(f"perf.scenarios.{name}")
