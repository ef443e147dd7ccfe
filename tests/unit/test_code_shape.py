"""The project's own rules on code shape, checked: small modules, short functions, and no module
of nxpar/ importing the test publisher or the tools around it."""
from __future__ import annotations

import ast
from pathlib import Path

NXPAR = Path(__file__).resolve().parents[2] / "nxpar"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 40


def modules() -> list[Path]:
    return sorted(NXPAR.rglob("*.py"))


def test_modules_are_small():
    big = {str(p.relative_to(NXPAR)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big


def test_functions_are_short():
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(NXPAR)}:{node.name}"] = n
    assert not long


def test_the_package_imports_no_test_or_tool_code():
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in ("launch", "perf", "tests"), (path, node.module)


def test_the_architecture_document_names_every_module():
    architecture = (NXPAR.parent / "docs" / "architecture.md").read_text()
    missing = [str(p.relative_to(NXPAR)) for p in modules()
               if p.name != "__init__.py" and p.name not in architecture]
    assert not missing


def test_texts_cite_the_projects_own_interface_reference():
    """Help, log messages and docstrings cite docs/interface.md, not a document outside the project."""
    cited = [str(p.relative_to(NXPAR)) for p in modules() if "spec §" in p.read_text()]
    readme = (NXPAR.parent / "README.md").read_text()
    assert not cited and "spec §" not in readme and "shared/spec" not in readme
    assert (NXPAR.parent / "docs" / "interface.md").exists()
