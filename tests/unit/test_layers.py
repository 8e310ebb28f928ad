"""The import rules of the layers, checked on the source (nothing is imported).

- ``model/``, ``storage/`` and ``connectors/`` import nothing from ``pipeline`` or the app
  (``linesight``), except the root of all errors, ``linesight.errors``.
- Nothing below the app (``pipeline/``, ``model/``, ``storage/``, ``connectors/``, ``training/``)
  imports ``linesight.settings``: the app builds what each part needs from the settings.

Imports inside functions and under ``TYPE_CHECKING`` count too. :data:`KNOWN_EXCEPTIONS` lists
today's violations explicitly, so any new one fails this test; remove an entry when it is fixed
(the test also fails on an entry that no longer happens, so the list cannot go stale).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOWER = ("model", "storage", "connectors")
BELOW_APP = ("pipeline", "model", "storage", "connectors", "training")
ALLOWED_FROM_APP = {"linesight.errors"}
SETTINGS = "linesight.settings"

# (file, imported module): violations known today. Parts below the app read settings through a Protocol of
# the fields they use (pipeline/stream/job.py's StreamSettings and the ones it builds on) or a small config
# built from Settings (model/factory.py's DetectorConfig); only a benchmark's entry point builds its own.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = {
    ("training/dialogue_bench.py", SETTINGS),  # a benchmark entry point (python -m), builds its own settings
}


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (``from a import b`` gives ``a`` and ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _files(folders: tuple[str, ...]) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in _files(LOWER):
        for module in _imports(path):
            if _within(module, "pipeline") or (
                _within(module, "linesight") and not any(_within(module, ok) for ok in ALLOWED_FROM_APP)
            ):
                found.add((str(path.relative_to(ROOT)), module))
    for path in _files(BELOW_APP):
        for module in _imports(path):
            if _within(module, SETTINGS):
                found.add((str(path.relative_to(ROOT)), SETTINGS))
    return found


def test_no_new_layer_violations():
    new = _violations() - KNOWN_EXCEPTIONS
    assert not new, f"imports that break the layer rules (see this test's docstring): {sorted(new)}"


def test_known_exceptions_still_happen():
    fixed = KNOWN_EXCEPTIONS - _violations()
    assert not fixed, f"no longer violated, remove from KNOWN_EXCEPTIONS: {sorted(fixed)}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from pipeline.stream.messages import BankRef\n", {"pipeline.stream.messages"}),
        ("import linesight.api.errors\n", {"linesight.api.errors"}),
        ("def f():\n    from linesight import settings\n", {"linesight", SETTINGS}),
        ("if TYPE_CHECKING:\n    from linesight.settings import Settings\n", {SETTINGS}),
        ("from linesight.errors import ConfigError\n", set()),
        ("from model.names import bank_key\n", set()),
    ],
)
def test_the_checker_sees_violations(tmp_path, monkeypatch, source, expected):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "x.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    flagged = {module for file, module in _violations() if file == "model/x.py"}
    assert expected <= flagged
    assert bool(flagged) == bool(expected)
