"""`python -m perf <scenario> [options]`: every benchmark of nxpar through one command line.

    python -m perf frames --frames 500 --ranks 1 2 3 4          one scenario (perf/scenarios/)
    python -m perf scaling --quick                              the emulated many-core box
    python -m perf suite bench                                  every command behind perf/RESULTS.md
    python -m perf report [--check]                             the documents' tables again from the JSON
    python -m perf plot                                         the PNGs from the JSON (needs matplotlib)

Every scenario writes one JSON document (--json, default perf/out/<scenario>.json; the suites write
perf/results/) and prints its tables, drawn from that JSON as the documents draw them. Common options:
--slices SPEC runs every process in its own CPU slice (perf/core/box.py), --keep keeps the run
directory (service logs, files).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
import sys
from pathlib import Path

from .core.box import SliceSpec
from .core.results import Document, command_line, default_path
from .scenarios import NAMES, load

COMMON = ("json", "slices", "keep", "command")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="SCENARIO")
    for name in NAMES:
        module = load(name)
        help_line = (module.__doc__ or name).strip().splitlines()[0]
        s = sub.add_parser(name, help=help_line, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(s)
        s.add_argument("--json", type=Path, default=None, help=f"where the results go (default {default_path(name)})")
        s.add_argument("--keep", action="store_true", help="keep the run directory (service logs, files)")
        if getattr(module, "SLICES", False):
            s.add_argument("--slices", type=SliceSpec.parse, default=None, metavar="SPEC",
                           help="each process in its own CPU slice: '16x0.1' (an emulated box) or "
                                "'publisher=0.4,redis=0.3,rank0=0.2,writer=0.2[,period=20]'")
    for name, help_line in (("suite", "run a list of benchmark commands (perf/suites.py)"),
                            ("report", "regenerate the tables of perf/RESULTS.md and perf/SCALING.md from the JSON"),
                            ("plot", "draw the PNGs from the JSON (any Python with matplotlib)")):
        s = sub.add_parser(name, help=help_line)
        s.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def run_scenario(args: argparse.Namespace, argv: list[str]) -> Path:
    from .report.tables import render

    module = load(args.command)
    params = {k: v for k, v in vars(args).items() if k not in COMMON}
    spec = getattr(args, "slices", None)
    doc = Document(args.command, command_line(argv), params, slices=asdict(spec) if spec else None)
    path = args.json or default_path(args.command)
    if spec is None:
        module.run(args, doc, None)
    else:
        from .core.slices import SliceSet

        with SliceSet(spec) as slices:
            module.run(args, doc, slices)
    doc.write(path)
    print("\n".join(render(Document.load(path))))  # what the documents will show: from the JSON
    print(f"\nwritten: {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("suite", "report", "plot"):
        tool = {"suite": "perf.suites", "report": "perf.report.documents", "plot": "perf.report.plots"}[argv[0]]
        import importlib

        return importlib.import_module(tool).main(argv[1:])
    args = parser().parse_args(argv)
    run_scenario(args, argv)


if __name__ == "__main__":
    main()
