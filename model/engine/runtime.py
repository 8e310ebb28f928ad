"""Run an exported encoder with ONNX Runtime or OpenVINO behind the :class:`ImageEncoder` interface.

:class:`EngineEncoder` keeps the torch encoder's name, sizes, ``preprocess``/``normalize`` and
text tower, and replaces ``forward`` by the compiled graph. Outputs come back as torch tensors.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from model.encoders.base import EncoderOutput, ImageEncoder
from model.engine.exceptions import CompileError, EngineUnavailableError, UnknownEngineError
from model.engine.export import INPUT_NAME, MIDDLE_NAME, output_names
from model.exceptions import ShapeError

__all__ = ["EngineEncoder", "OnnxRuntimeRunner", "OpenVinoRunner", "make_runner"]


class OnnxRuntimeRunner:
    """One ONNX Runtime CPU session on ``threads`` intra-op threads (fp32 only: ORT has no CPU bf16)."""

    engine = "onnxruntime"
    pixels_nhwc = False  # takes (B, 3, S, S)

    def __init__(self, model_file: Path, outputs: list[str], threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineUnavailableError("engine 'onnxruntime' needs the package onnxruntime (pip install onnxruntime)") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types
            raise CompileError(f"onnxruntime cannot load {model_file}: {exc}") from exc
        self._outputs = outputs

    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        return self._session.run(self._outputs, {INPUT_NAME: pixels})


def _compile_openvino(model_file: Path, threads: int, precision: str, *, pixels_nhwc: bool = False):
    """An OpenVINO CPU compiled model of ``model_file`` (latency hint, ``threads`` threads, f32 or bf16).

    ``pixels_nhwc``: the ``pixels`` input is given as (B, S, S, 3) (the channels-last memory the
    encoders' ``preprocess`` returns, without a transposing copy); OpenVINO folds the transpose in.
    """
    try:
        import openvino as ov
        from openvino.preprocess import PrePostProcessor
    except ImportError as exc:
        raise EngineUnavailableError("engine 'openvino' needs the package openvino (pip install openvino)") from exc
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }
    try:
        core = ov.Core()
        model = core.read_model(str(model_file))
        if pixels_nhwc:
            steps = PrePostProcessor(model)
            steps.input(INPUT_NAME).tensor().set_layout(ov.Layout("NHWC"))
            steps.input(INPUT_NAME).model().set_layout(ov.Layout("NCHW"))
            model = steps.build()
        return core.compile_model(model, "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError and its own types
        raise CompileError(f"openvino cannot compile {model_file} with {config}: {exc}") from exc


class OpenVinoRunner:
    """One OpenVINO CPU compiled model (latency hint, ``threads`` threads, f32 or bf16 inference).

    With ``head_file`` (an encoder's precision-sensitive head, ``export_split_onnx``), the head runs
    first in f32 and hands its output buffer to ``model_file`` (the body) without a copy.
    """

    engine = "openvino"
    pixels_nhwc = True  # takes (B, S, S, 3)

    def __init__(self, model_file: Path, outputs: list[str], threads: int, precision: str,
                 head_file: Path | None = None) -> None:
        self._head = None
        if head_file is not None:
            self._head = _compile_openvino(head_file, threads, "fp32", pixels_nhwc=True).create_infer_request()
        compiled = _compile_openvino(model_file, threads, precision, pixels_nhwc=head_file is None)
        self._input = INPUT_NAME if head_file is None else MIDDLE_NAME
        self._request = compiled.create_infer_request()
        self._ports = [compiled.output(name) for name in outputs]
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns

    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            if self._head is not None:
                pixels = self._head.infer({INPUT_NAME: pixels}, share_inputs=True)[0]
            result = self._request.infer({self._input: pixels}, share_inputs=True)
            return [np.array(result[port], copy=True) for port in self._ports]  # the request reuses its buffers


def make_runner(engine: str, model_file: Path, outputs: list[str], *, threads: int, precision: str,
                head_file: Path | None = None):
    """The runner for ``engine`` ("onnxruntime" or "openvino") over ``model_file`` (after ``head_file``: openvino)."""
    if engine == "onnxruntime":
        if precision != "fp32":
            raise EngineUnavailableError(
                f"engine 'onnxruntime' runs fp32 only on CPU, got precision={precision!r}; use engine 'openvino' for bf16"
            )
        if head_file is not None:
            raise EngineUnavailableError("engine 'onnxruntime' runs one graph; a precision split is for openvino bf16")
        return OnnxRuntimeRunner(model_file, outputs, threads)
    if engine == "openvino":
        return OpenVinoRunner(model_file, outputs, threads, precision, head_file)
    raise UnknownEngineError(f"no runner for engine {engine!r}; choose 'onnxruntime' or 'openvino'")


class EngineEncoder(ImageEncoder):
    """An :class:`ImageEncoder` whose ``forward`` runs an exported graph; the rest is the torch encoder's.

    ``engine``, ``precision`` and ``engine_description`` say what runs it. The compiled runtime
    cannot be pickled: build it where it runs (inside the Ray actor), not before shipping it.
    """

    def __init__(self, encoder: ImageEncoder, runner, *, precision: str, description: str, model_file: Path) -> None:
        super().__init__()
        self.name = encoder.name
        self.image_size_px = int(encoder.image_size_px)
        self.stage_channels = tuple(encoder.stage_channels)
        self.global_dim = int(encoder.global_dim)
        for attribute in ("stage_blocks", "patch_size_px", "text_embedder"):
            if hasattr(encoder, attribute):
                setattr(self, attribute, getattr(encoder, attribute))
        object.__setattr__(self, "_torch_encoder", encoder)  # not a submodule: its weights are not ours to move
        self._runner = runner
        self.engine = runner.engine
        self.precision = precision
        self.engine_description = description
        self.model_file = model_file

    @property
    def torch_encoder(self) -> ImageEncoder:
        """The eager encoder this one was exported from (the reference)."""
        return self._torch_encoder

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """The torch encoder's normalisation (runs in torch: it is cheap)."""
        return self._torch_encoder.normalize(pixels)

    def forward(self, pixels: torch.Tensor) -> EncoderOutput:
        """(B, 3, S, S) normalised pixels -> stages (B, C_i, H_i, W_i) and global vector (B, C_global)."""
        size = self.image_size_px
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, size, size):
            raise ShapeError(f"expected pixels of shape (B, 3, {size}, {size}), got {tuple(pixels.shape)}")
        pixels = pixels.detach().to("cpu", torch.float32)
        if self._runner.pixels_nhwc:  # no copy for preprocess's channels-last pixels
            pixels = pixels.permute(0, 2, 3, 1)
        array = np.ascontiguousarray(pixels.numpy())
        outputs = [torch.from_numpy(out).to(pixels.device) for out in self._runner(array)]
        return EncoderOutput(patch_features=tuple(outputs[:-1]), global_vector=outputs[-1])


def build_engine_encoder(
    encoder: ImageEncoder, model_file: Path, engine: str, precision: str, threads: int, description: str,
    head_file: Path | None = None,
) -> EngineEncoder:
    """Compile ``model_file`` (after ``head_file``, an fp32 head) with ``engine`` and wrap it as an :class:`EngineEncoder`."""
    runner = make_runner(engine, model_file, output_names(encoder), threads=threads, precision=precision,
                         head_file=head_file)
    return EngineEncoder(encoder, runner, precision=precision, description=description, model_file=model_file)
