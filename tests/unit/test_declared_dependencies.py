"""Every third-party package the code or the tests import is declared in pyproject.toml.

A package that arrives only through another one's dependencies (fastapi through ray[serve]) breaks
the day that dependency changes; this test lists the imports by parsing the sources (nothing is
imported) and maps each top-level module to its distribution with the installed metadata.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = {"linesight", "pipeline", "model", "connectors", "storage", "training", "tests"}
SOURCES = ("linesight", "pipeline", "model", "connectors", "storage", "training", "tests")


def _imported_top_levels() -> dict[str, str]:
    """Top-level module -> one file importing it, for every non-local, non-stdlib import."""
    found: dict[str, str] = {}
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in LOCAL and top not in sys.stdlib_module_names:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return {_normalise(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in specs}


def test_every_direct_import_is_declared():
    providers = importlib.metadata.packages_distributions()
    declared = _declared()
    missing = {}
    for module, where in _imported_top_levels().items():
        distributions = {_normalise(d) for d in providers.get(module, [])}
        assert distributions, f"{module!r} (imported by {where}) is not installed"
        if not distributions & declared:
            missing[module] = (sorted(distributions), where)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
