"""Errors of the inference-engine backends; all derive from :class:`model.exceptions.ModelError`."""

from model.exceptions import ModelError

__all__ = ["EngineError", "EngineUnavailableError", "ExportError", "CompileError", "UnknownEngineError"]


class EngineError(ModelError):
    """An inference engine could not be chosen, built or run (the message names the engine and why)."""


class UnknownEngineError(EngineError):
    """An engine or precision name is not one of the accepted values (the message lists them)."""


class EngineUnavailableError(EngineError):
    """The engine's package is not installed, or the CPU lacks what the requested precision needs."""


class ExportError(EngineError):
    """Exporting an encoder to ONNX failed (the message names the encoder and the cache file)."""


class CompileError(EngineError):
    """ONNX Runtime or OpenVINO could not load or compile an exported file (the message names it)."""
