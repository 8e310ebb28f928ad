"""Inference engines for the frozen encoder: eager torch, ONNX Runtime or OpenVINO (fp32 or bf16).

``accelerate(encoder, engine="auto", precision="auto", cache_dir=..., threads=1)`` returns an
:class:`~model.encoders.base.ImageEncoder` running on the engine :func:`choose_engine` picks for
this CPU (:func:`detect_cpu_features`). Pure model code: no settings are read here.
"""

from model.engine.accelerate import MIN_PATCH_COSINE, accelerate, probe_pixels, self_check
from model.engine.choice import ENGINES, PRECISIONS, EngineChoice, available_engines, choose_engine
from model.engine.cpu import CpuFeatures, detect_cpu_features, parse_cpu_flags
from model.engine.exceptions import (
    CompileError,
    EngineError,
    EngineUnavailableError,
    ExportError,
    UnknownEngineError,
)
from model.engine.export import cache_key, export_onnx, export_split_onnx, weights_hash
from model.engine.runtime import EngineEncoder

__all__ = [
    "ENGINES",
    "MIN_PATCH_COSINE",
    "PRECISIONS",
    "CompileError",
    "CpuFeatures",
    "EngineChoice",
    "EngineEncoder",
    "EngineError",
    "EngineUnavailableError",
    "ExportError",
    "UnknownEngineError",
    "accelerate",
    "available_engines",
    "cache_key",
    "choose_engine",
    "detect_cpu_features",
    "export_onnx",
    "export_split_onnx",
    "parse_cpu_flags",
    "probe_pixels",
    "self_check",
    "weights_hash",
]
