"""The folder tree is the architecture (nxpar/__init__.py): packages by stage of the data path, no import
cycles, and the directions between packages kept. Imports are read from the source (module level and
inside functions alike), so a function-local import cannot hide a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

NXPAR = Path(__file__).resolve().parents[2] / "nxpar"
PACKAGES = ("service", "driver", "protocol", "writers", "sources", "nexus", "util")
# package -> the nxpar packages it may import (itself always)
ALLOWED = {
    "service": {"driver", "writers", "protocol", "sources", "nexus", "util"},
    "driver": {"protocol", "sources", "nexus", "util"},
    "writers": {"protocol", "sources", "nexus", "util"},
    "sources": {"protocol", "util"},
    "nexus": {"protocol", "util"},
    "protocol": {"util"},
    "util": set(),
}
# third-party modules that do I/O: the planning package never imports them
IO_MODULES = {"h5py", "hdf5plugin", "mpi4py", "redis", "tango", "PyTango", "blissdata", "socket", "fabio"}
PURE_ALLOWED = {"blissdata.h5map"}  # pydantic models of the h5map JSON: parsing only


def module_name(path: Path) -> str:
    parts = path.relative_to(NXPAR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from pkg import module`
    return found


MODULES = {module_name(p): p for p in sorted(NXPAR.rglob("*.py"))}
GRAPH = {m: {i for i in imports_of(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_lives_in_a_package_of_the_data_path():
    loose = [m for m in MODULES if m != "nxpar" and package_of(m) not in PACKAGES]
    assert not loose, f"modules outside {PACKAGES}: {loose}"
    assert not [m for m in MODULES if m.count(".") == 1 and not MODULES[m].name == "__init__.py"]


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_it_owns(package):
    doc = ast.get_docstring(ast.parse((NXPAR / package / "__init__.py").read_text()))
    assert doc and len(doc) > 80, f"nxpar/{package}/__init__.py needs a docstring: what it owns and may import"


def test_packages_import_only_in_the_allowed_direction():
    wrong = sorted(f"{m} -> {i}" for m, deps in GRAPH.items() for i in deps
                   if package_of(m) in ALLOWED and package_of(i) != package_of(m)
                   and package_of(i) not in ALLOWED[package_of(m)])
    assert not wrong


def test_rank0_and_writer_packages_meet_only_in_protocol():
    assert not [(m, i) for m, deps in GRAPH.items() for i in deps
                if {package_of(m), package_of(i)} == {"driver", "writers"}]


def test_nexus_plans_without_io():
    bad = sorted((m, i) for m in MODULES if package_of(m) == "nexus"
                 for i in imports_of(MODULES[m])
                 if i.split(".")[0] in IO_MODULES and not any(i == a or i.startswith(a + ".") for a in PURE_ALLOWED)
                 and i != "blissdata")
    assert not bad


def test_no_import_cycles():
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for i in sorted(GRAPH[m]):
            if state.get(i) == 1:
                cycles.append(stack[stack.index(i):] + [i])
            elif i not in state:
                visit(i, stack + [i])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles
