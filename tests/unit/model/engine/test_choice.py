"""model/engine/cpu.py and choice.py: flags parsed, engine and precision chosen on fake CPUs."""

from __future__ import annotations

import pytest

from model.engine import (
    CpuFeatures,
    EngineUnavailableError,
    UnknownEngineError,
    choose_engine,
    detect_cpu_features,
    parse_cpu_flags,
)
from model.engine.exceptions import EngineError
from model.exceptions import ModelError

AMX = parse_cpu_flags("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", model="Xeon")
AVX512_BF16 = parse_cpu_flags("fpu avx2 avx512f avx512_bf16 avx512_vnni", model="EPYC")
AVX2 = parse_cpu_flags("fpu sse4_2 avx2", model="old")
ALL = {"torch", "onnxruntime", "openvino"}


def test_flags_are_parsed_and_described():
    assert AMX.has_amx
    assert AMX.has_bf16
    assert not AVX512_BF16.has_amx
    assert AVX512_BF16.has_bf16
    assert not AVX2.has_bf16
    assert AMX.describe() == "amx_bf16, avx512_bf16"
    assert AVX512_BF16.describe() == "avx512_bf16, no amx"
    assert AVX2.describe() == "avx2, no bf16"
    assert AVX512_BF16.flags() == ["avx512_bf16", "avx512_vnni", "avx512f", "avx2"]
    # amx_bf16 without the tile flag is not usable AMX
    assert not parse_cpu_flags("amx_bf16").has_amx


def test_this_machine_is_detected_from_its_own_flags():
    features = detect_cpu_features()
    assert isinstance(features, CpuFeatures)
    with open("/proc/cpuinfo") as handle:
        line = next(line for line in handle if line.startswith("flags"))
    flags = set(line.split(":", 1)[1].split())
    assert features.avx2 == ("avx2" in flags)
    assert features.avx512_bf16 == ("avx512_bf16" in flags)
    assert features.amx_bf16 == ("amx_bf16" in flags)


@pytest.mark.parametrize(
    ("features", "available", "expected"),
    [
        (AMX, ALL, ("openvino", "bf16")),
        (AVX512_BF16, ALL, ("openvino", "bf16")),  # measured faster than f32 without AMX (docs/engine.md)
        (AVX2, ALL, ("openvino", "fp32")),
        (AMX, {"torch", "onnxruntime"}, ("onnxruntime", "fp32")),  # ORT has no CPU bf16
        (AMX, {"torch"}, ("torch", "fp32")),
    ],
)
def test_auto_picks_the_fastest_installed_engine(features, available, expected):
    choice = choose_engine("auto", "auto", features, available=available)
    assert (choice.engine, choice.precision) == expected
    assert features.describe() in choice.reason


def test_auto_says_why_it_fell_back():
    choice = choose_engine("auto", "auto", AMX, available={"torch"})
    assert "openvino not installed" in choice.reason
    assert "onnxruntime not installed" in choice.reason


def test_auto_engine_with_bf16_on_a_cpu_without_it_falls_back_to_fp32():
    choice = choose_engine("auto", "bf16", AVX2, available=ALL)
    assert (choice.engine, choice.precision) == ("openvino", "fp32")
    assert "bf16 requested" in choice.reason


def test_auto_precision_fp32_is_honoured():
    assert choose_engine("auto", "fp32", AMX, available=ALL)[:2] == ("openvino", "fp32")


@pytest.mark.parametrize(
    ("engine", "precision", "features", "expected"),
    [
        ("torch", "auto", AMX, ("torch", "fp32")),
        ("onnxruntime", "auto", AMX, ("onnxruntime", "fp32")),
        ("openvino", "auto", AVX2, ("openvino", "fp32")),
        ("openvino", "auto", AMX, ("openvino", "bf16")),
        ("openvino", "fp32", AMX, ("openvino", "fp32")),
        ("openvino", "bf16", AVX512_BF16, ("openvino", "bf16")),
    ],
)
def test_explicit_choices_are_honoured(engine, precision, features, expected):
    assert choose_engine(engine, precision, features, available=ALL)[:2] == expected


@pytest.mark.parametrize(
    ("engine", "precision", "features", "available", "match"),
    [
        ("openvino", "auto", AMX, {"torch", "onnxruntime"}, "pip install openvino"),
        ("onnxruntime", "bf16", AMX, ALL, "runs fp32 only"),
        ("torch", "bf16", AMX, ALL, "runs fp32 only"),
        ("openvino", "bf16", AVX2, ALL, "needs a CPU with amx_bf16 or avx512_bf16"),
    ],
)
def test_impossible_explicit_choices_raise(engine, precision, features, available, match):
    with pytest.raises(EngineUnavailableError, match=match):
        choose_engine(engine, precision, features, available=available)


@pytest.mark.parametrize(("engine", "precision", "bad"), [("tensorrt", "auto", "'tensorrt'"), ("auto", "int8", "'int8'")])
def test_unknown_names_are_named(engine, precision, bad):
    with pytest.raises(UnknownEngineError, match=bad) as info:
        choose_engine(engine, precision, AMX, available=ALL)
    assert isinstance(info.value, EngineError)
    assert isinstance(info.value, ModelError)
    assert "choose one of" in str(info.value)
