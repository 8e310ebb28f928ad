"""The doctests of the packages that need no service: model/, connectors/, storage/, training/,
the pure pipeline modules and the error modules of the app.

Examples that need a service (a broker, Ray, an LLM) are marked ``# doctest: +SKIP`` where they
are written; everything else runs here, so a docstring example that stops being true fails the
unit tests. The few slow ones (a whole detector, a bank build) are marked ``slow``.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("model", "connectors", "storage", "training")
MODULES = (
    "pipeline.stream.bank_cache", "pipeline.stream.counters", "pipeline.stream.monitor", "pipeline.stream.placement",
    "linesight.errors", "linesight.api.errors", "linesight.bench", "linesight.bench_capacity",
)
SKIP_FOLDERS = {"migrations"}  # Alembic's env.py runs only inside Alembic
SLOW = {"model.detector", "model.fewshot", "training.metrics", "model.encoders.efficientnet"}


def _modules() -> list[str]:
    names = list(MODULES)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            if SKIP_FOLDERS & set(relative.parts):
                continue
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            text = path.read_text(encoding="utf-8")
            if ">>> " in text:
                names.append(".".join(parts))
    return names


@pytest.mark.parametrize(
    "module_name",
    [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in _modules()],
)
def test_doctests(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {module_name}"
