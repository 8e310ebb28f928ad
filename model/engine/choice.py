"""Which engine and precision run the encoder: ``choose_engine(engine, precision, features)``.

``auto`` prefers OpenVINO, then ONNX Runtime, then eager torch (the first whose package imports).
Precision ``auto`` is bf16 on OpenVINO where the CPU computes bf16 natively (AMX, or avx512_bf16
without AMX: measured faster than f32 on such a host, see docs/engine.md) and fp32 otherwise;
ONNX Runtime and torch run fp32. Explicit choices are honoured or refused with an
:class:`EngineUnavailableError`; ``auto`` never refuses, it falls back and says why in ``reason``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection
from typing import NamedTuple

from model.engine.cpu import CpuFeatures, detect_cpu_features
from model.engine.exceptions import EngineUnavailableError, UnknownEngineError

__all__ = ["ENGINES", "PRECISIONS", "EngineChoice", "available_engines", "choose_engine"]

ENGINES = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")
_AUTO_ORDER = ("openvino", "onnxruntime", "torch")  # fastest first (measured, docs/engine.md)
_BF16_ENGINES = ("openvino",)  # ORT's CPU provider has no bf16 kernels; torch bf16 autocast did not help
# bf16 without AMX (avx512_bf16 dot products only): OpenVINO bf16 measured faster than f32 on an
# AMD EPYC with avx512_bf16 and no AMX (docs/engine.md), so auto uses it there too.
BF16_WITHOUT_AMX = True


class EngineChoice(NamedTuple):
    """What :func:`choose_engine` picked and a one-line reason for the log."""

    engine: str  # "torch" | "onnxruntime" | "openvino"
    precision: str  # "fp32" | "bf16"
    reason: str


def available_engines() -> frozenset[str]:
    """Engines whose package is importable here ("torch" always)."""
    found = {"torch"}
    for name in ("onnxruntime", "openvino"):
        if importlib.util.find_spec(name) is not None:
            found.add(name)
    return frozenset(found)


def _cpu_bf16(features: CpuFeatures) -> bool:
    return features.has_amx or (features.avx512_bf16 and BF16_WITHOUT_AMX)


def choose_engine(
    engine: str = "auto",
    precision: str = "auto",
    features: CpuFeatures | None = None,
    *,
    available: Collection[str] | None = None,
) -> EngineChoice:
    """Pick (engine, precision, reason) for this CPU and the installed packages.

    ``features`` defaults to :func:`detect_cpu_features`, ``available`` to :func:`available_engines`.

    >>> from model.engine.cpu import parse_cpu_flags
    >>> choose_engine("auto", "auto", parse_cpu_flags("avx2 amx_bf16 amx_tile"), available={"torch", "openvino"})[:2]
    ('openvino', 'bf16')
    """
    if engine not in ENGINES:
        raise UnknownEngineError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}")
    if precision not in PRECISIONS:
        raise UnknownEngineError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    features = features if features is not None else detect_cpu_features()
    available = frozenset(available if available is not None else available_engines()) | {"torch"}
    cpu = f"cpu: {features.describe()}"
    if engine != "auto":
        return _explicit(engine, precision, features, available, cpu)
    skipped = [f"{name} not installed" for name in _AUTO_ORDER if name not in available]
    chosen = next(name for name in _AUTO_ORDER if name in available)
    wants_bf16 = precision == "bf16" or (precision == "auto" and _cpu_bf16(features))
    if wants_bf16 and chosen in _BF16_ENGINES and features.has_bf16:
        chosen_precision = "bf16"
    else:
        chosen_precision = "fp32"
        if precision == "bf16":
            why = f"{chosen} has no bf16" if chosen not in _BF16_ENGINES else "the cpu has no amx/avx512_bf16"
            skipped.append(f"bf16 requested but {why}")
    notes = "; ".join([cpu, *skipped])
    return EngineChoice(chosen, chosen_precision, f"auto: {chosen} {chosen_precision} ({notes})")


def _explicit(engine: str, precision: str, features: CpuFeatures, available: frozenset[str], cpu: str) -> EngineChoice:
    if engine not in available:
        raise EngineUnavailableError(f"engine {engine!r} needs the package {engine} (pip install {engine})")
    if engine not in _BF16_ENGINES:
        if precision == "bf16":
            raise EngineUnavailableError(
                f"engine {engine!r} runs fp32 only on CPU, got precision='bf16'; use engine 'openvino' for bf16"
            )
        return EngineChoice(engine, "fp32", f"{engine} fp32 (requested; {cpu})")
    if precision == "bf16" and not features.has_bf16:
        raise EngineUnavailableError(
            f"precision 'bf16' needs a CPU with amx_bf16 or avx512_bf16; this one has {features.flags() or 'neither'}"
        )
    if precision == "auto":
        precision = "bf16" if _cpu_bf16(features) else "fp32"
        return EngineChoice(engine, precision, f"{engine} {precision} (requested engine, auto precision; {cpu})")
    return EngineChoice(engine, precision, f"{engine} {precision} (requested; {cpu})")
