"""LINESIGHT_ENGINE / LINESIGHT_PRECISION: defaults, environment, bad values named."""

from __future__ import annotations

import pytest

from linesight.errors import ConfigError
from linesight.settings import load_settings
from model.engine import ENGINES, PRECISIONS


def test_defaults_are_auto_and_match_the_model_package():
    settings = load_settings()
    assert (settings.engine, settings.precision) == ("auto", "auto")
    field = type(settings).model_fields
    assert set(field["engine"].annotation.__args__) == set(ENGINES)
    assert set(field["precision"].annotation.__args__) == set(PRECISIONS)


def test_environment_sets_engine_and_precision(monkeypatch):
    monkeypatch.setenv("LINESIGHT_ENGINE", "onnxruntime")
    monkeypatch.setenv("LINESIGHT_PRECISION", "fp32")
    settings = load_settings()
    assert (settings.engine, settings.precision) == ("onnxruntime", "fp32")


@pytest.mark.parametrize(("field", "value"), [("engine", "tensorrt"), ("precision", "int8")])
def test_bad_values_are_named(field, value):
    with pytest.raises(ConfigError, match=f"{field}='{value}'"):
        load_settings(**{field: value})
