"""The star: the cores (extractors, fusion, ranker) know nothing of one another or of pipelines, which composes
them. Parsed from the source, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORES = ("extractors", "fusion", "ranker")
FIRST_PARTY = (*CORES, "pipelines")


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level first-party package) of every import in a file, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update((node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in FIRST_PARTY)
    return found


@pytest.mark.parametrize("core", CORES)
def test_a_core_imports_no_other_core_and_not_pipelines(core):
    offenders = [f"{path.relative_to(REPO)}:{line} imports {package}"
                 for path in sorted((REPO / core).rglob("*.py"))
                 for line, package in sorted(imported_packages(path)) if package != core]
    assert not offenders, "a core must stay independent (compose it in pipelines/ instead):\n" + "\n".join(offenders)


def test_the_boundary_check_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\n\ndef f():\n    from pipelines.store.layout import Store\n    import ranker.topk\n")
    assert imported_packages(bad) == {(4, "pipelines"), (5, "ranker")}


def test_tests_mirror_the_packages():
    """Each test module sits in the folder of the package it tests (tests/<package>/), cross-cutting ones at the
    top; a package with no test folder is a package without tests."""
    for package in FIRST_PARTY:
        assert list((REPO / "tests" / package).glob("test_*.py")), f"tests/{package}/ has no tests"
