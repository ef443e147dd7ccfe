"""The generated blocks of perf/RESULTS.md and perf/SCALING.md, regenerated from the JSON:
`python -m perf report` (rewrites them), `python -m perf report --check` (fails if a document differs
from what its JSON gives: a figure typed in by hand, or tables not regenerated after a run).

A block is what lies between `<!-- perf:NAME -->` and `<!-- /perf:NAME -->`: the tables of
perf/results/NAME.json (perf/report/tables.py) and its plot if perf/results/plots/NAME.png exists,
or, while NAME was never run, the command that makes it (perf/suites.py). Everything outside the
blocks is prose and holds no measured figure.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..core.results import RESULTS, ROOT, Document
from .tables import render

DOCUMENTS = (ROOT / "perf" / "RESULTS.md", ROOT / "perf" / "SCALING.md")
BLOCK = re.compile(r"(<!-- perf:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /perf:(?P=name) -->)", re.S)


def suite_of(name: str) -> tuple[str, list[str]] | None:
    from ..suites import SUITES

    for suite, entries in SUITES.items():
        for entry in entries:
            if entry.name == name:
                return suite, entry.argv(False) or []
    return None


def block(name: str, results: Path = RESULTS) -> str:
    path = results / f"{name}.json"
    if not path.exists():
        found = suite_of(name)
        how = (f"`python -m perf {' '.join(found[1])}` (part of `python -m perf suite {found[0]}`)" if found
               else f"no command writes perf/results/{name}.json")
        return f"_Not measured yet: {how}._\n"
    lines = render(Document.load(path))
    plot = results / "plots" / f"{name}.png"
    if plot.exists():
        lines += [f"![{name}]({plot.relative_to(ROOT / 'perf')})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def regenerate(text: str, results: Path = RESULTS) -> str:
    return BLOCK.sub(lambda m: m.group(1) + block(m.group("name"), results) + m.group(4), text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m perf report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a document is out of date")
    args = p.parse_args(argv)
    stale = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        fresh = regenerate(text)
        if fresh != text:
            stale.append(doc.name)
            if not args.check:
                doc.write_text(fresh)
    verb = "out of date" if args.check else "regenerated"
    print(f"{verb}: {', '.join(stale)}" if stale else "every generated block is up to date")
    if args.check and stale:
        sys.exit(1)


if __name__ == "__main__":
    main()
