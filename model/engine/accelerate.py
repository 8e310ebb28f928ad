"""``accelerate(encoder, engine=..., precision=..., cache_dir=..., threads=...)``: the encoder on the chosen engine.

Export (cached, model/engine/export.py), compile (model/engine/runtime.py), then a quick self-check
on two random images against the torch encoder, so a broken export never scores frames. With
``engine="auto"`` a failure at any step falls back to the next engine (openvino -> onnxruntime ->
torch) and the reason is logged and kept in ``engine_description``; an explicit engine that fails
raises an :class:`~model.engine.exceptions.EngineError`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.nn import functional as F

from model.encoders.base import ImageEncoder
from model.engine.choice import available_engines, choose_engine
from model.engine.cpu import detect_cpu_features
from model.engine.exceptions import CompileError, EngineError
from model.engine.export import export_onnx
from model.engine.runtime import EngineEncoder, build_engine_encoder

__all__ = ["accelerate", "self_check"]

_log = logging.getLogger(__name__)
# mean per-patch cosine to torch fp32 on random pixels below which an engine is refused: catches a
# broken graph (wrong outputs, lost layers), not precision (tests hold the tight per-patch bounds)
_SELF_CHECK_MIN_COSINE = {"fp32": 0.999, "bf16": 0.98}


def accelerate(
    encoder: ImageEncoder,
    *,
    engine: str = "auto",
    precision: str = "auto",
    cache_dir: Path,
    threads: int = 1,
) -> ImageEncoder:
    """Return ``encoder`` running on ``engine`` at ``precision`` (``"torch"``: the encoder itself).

    The result has the same ``name``, ``image_size_px``, ``stage_channels``, ``global_dim`` and
    ``preprocess``/``normalize``, and says what runs it in ``engine``, ``precision`` and
    ``engine_description``. Exported graphs are cached in ``cache_dir``.

    >>> fast = accelerate(EfficientNetLiteEncoder(), cache_dir=Path("engine-cache"))  # doctest: +SKIP
    >>> fast.engine_description  # doctest: +SKIP
    'openvino bf16 (cpu: avx512_bf16, no amx)'
    """
    if isinstance(encoder, EngineEncoder):
        encoder = encoder.torch_encoder
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise EngineError(f"threads must be an integer >= 1, got {threads!r}")
    features = detect_cpu_features()
    available = set(available_engines())
    failures: list[str] = []
    while True:
        choice = choose_engine(engine, precision, features, available=available)
        notes = "; ".join([f"cpu: {features.describe()}", *failures])
        description = f"{choice.engine} {choice.precision} ({notes})"
        if choice.engine == "torch":
            _log.info("encoder %s runs on %s", encoder.name, choice.reason + ("; " + "; ".join(failures) if failures else ""))
            encoder.engine_description = description
            return encoder
        try:
            model_file = export_onnx(encoder, Path(cache_dir))
            fast = build_engine_encoder(encoder, model_file, choice.engine, choice.precision, threads, description)
            self_check(fast, encoder)
        except EngineError as exc:
            if engine != "auto":
                raise
            _log.warning("engine %s %s failed, falling back: %s", choice.engine, choice.precision, exc)
            failures.append(f"{choice.engine} failed: {exc}")
            available.discard(choice.engine)
            continue
        _log.info("encoder %s runs on %s", encoder.name, choice.reason)
        return fast


@torch.no_grad()
def self_check(fast: ImageEncoder, reference: ImageEncoder, batch: int = 2) -> float:
    """Smallest per-stage mean patch cosine of ``fast`` to ``reference`` on random pixels; raises if too low."""
    size = reference.image_size_px
    generator = torch.Generator().manual_seed(0)
    pixels = reference.normalize(torch.rand(batch, 3, size, size, generator=generator))
    want = reference(pixels)
    got = fast(pixels)
    shapes = [tuple(t.shape) for t in want.patch_features] + [tuple(want.global_vector.shape)]
    shapes_got = [tuple(t.shape) for t in got.patch_features] + [tuple(got.global_vector.shape)]
    if shapes != shapes_got:
        raise CompileError(f"{fast.engine_description}: output shapes {shapes_got} differ from torch's {shapes}")
    worst = min(float(F.cosine_similarity(a.float(), b.float(), dim=1).mean()) for a, b in zip(want.patch_features, got.patch_features, strict=True))
    floor = _SELF_CHECK_MIN_COSINE.get(getattr(fast, "precision", "fp32"), 0.999)
    if not worst >= floor:  # also catches NaN
        raise CompileError(
            f"{fast.engine_description}: mean patch cosine to torch fp32 is {worst:.4f} < {floor} on random pixels"
        )
    return worst
