"""``accelerate(encoder, engine=..., precision=..., cache_dir=..., threads=...)``: the encoder on the chosen engine.

Export (cached, model/engine/export.py), compile (model/engine/runtime.py), then a self-check on 4
probe images against the torch encoder, so a broken export never scores frames and a bf16 that
loses too much accuracy is not chosen by ``auto``. With
``engine="auto"`` a failure at any step falls back to the next engine (openvino -> onnxruntime ->
torch) and the reason is logged and kept in ``engine_description``; an explicit engine that fails
raises an :class:`~model.engine.exceptions.EngineError`.

OpenVINO bf16 runs an encoder's :meth:`~model.encoders.base.ImageEncoder.precision_split` where it
has one: the first layers in fp32, the rest in bf16 (EfficientNet-Lite0: all bf16 reached a worst
probe cosine of 0.970, stem and block 0 in fp32 0.997; figures in model/encoders/efficientnet.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.nn import functional as F

from model.encoders.base import EncoderOutput, ImageEncoder
from model.engine.choice import available_engines, choose_engine
from model.engine.cpu import detect_cpu_features
from model.engine.exceptions import CompileError, EngineError
from model.engine.export import export_onnx, export_split_onnx
from model.engine.runtime import EngineEncoder, build_engine_encoder

__all__ = ["MIN_PATCH_COSINE", "accelerate", "probe_pixels", "self_check"]

_log = logging.getLogger(__name__)
# Smallest per-patch cosine to torch fp32 on the probe images (:func:`probe_pixels`) that an engine
# must reach. fp32: a gross check (wrong outputs, lost layers); bf16: the accuracy bar.
# Below it, an fp32 engine is refused, and a bf16 that auto chose falls back to fp32 on the same
# engine (OpenVINO bf16 of the whole EfficientNet reached only ~0.97 on flat images, docs/engine.md;
# with its precision_split it reaches ~0.997).
MIN_PATCH_COSINE = {"fp32": 0.999, "bf16": 0.995}


class _AccuracyError(CompileError):
    """The compiled engine's features are further from torch fp32 than ``MIN_PATCH_COSINE`` allows."""


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
    ``engine_description`` (the torch encoder is returned as is, with its ``engine_description``
    set to say why). Exported graphs are cached in ``cache_dir``. Every compiled engine is checked
    against the torch encoder on :func:`probe_pixels` before it is returned.

    >>> fast = accelerate(EfficientNetLiteEncoder(), cache_dir=Path("engine-cache"))  # doctest: +SKIP
    >>> fast.engine_description  # doctest: +SKIP
    'openvino bf16 (cpu: amx_bf16, avx512_bf16; first layers fp32)'
    """
    if isinstance(encoder, EngineEncoder):
        encoder = encoder.torch_encoder
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise EngineError(f"threads must be an integer >= 1, got {threads!r}")
    features = detect_cpu_features()
    available = set(available_engines())
    wanted_precision = precision
    notes: list[str] = []
    reference: dict[str, EncoderOutput] = {}  # the torch encoder's probe outputs, computed once
    while True:
        choice = choose_engine(engine, wanted_precision, features, available=available)
        split = choice.engine == "openvino" and choice.precision == "bf16" and encoder.precision_split() is not None
        details = [f"cpu: {features.describe()}", *notes, *(["first layers fp32"] if split else [])]
        description = f"{choice.engine} {choice.precision} (" + "; ".join(details) + ")"
        if choice.engine == "torch":
            _log.info("encoder %s runs on %s", encoder.name, description)
            encoder.engine_description = description
            return encoder
        try:
            if split:  # OpenVINO bf16 keeps the encoder's precision-sensitive head in fp32
                head_file, body_file = export_split_onnx(encoder, Path(cache_dir))
            else:
                head_file, body_file = None, export_onnx(encoder, Path(cache_dir))
            fast = build_engine_encoder(encoder, body_file, choice.engine, choice.precision, threads, description,
                                        head_file)
            worst = self_check(fast, encoder, strict=precision != "bf16", cache=reference)
        except _AccuracyError as exc:
            if choice.precision == "bf16" and precision == "auto":  # keep the engine, drop to fp32
                _log.warning("%s; using fp32", exc)
                notes.append(f"bf16 failed the accuracy check: {exc.args[0].split(': ', 1)[-1]}")
                wanted_precision = "fp32"
                continue
            if engine != "auto":
                raise
            notes.append(f"{choice.engine} failed: {exc}")
            available.discard(choice.engine)
            continue
        except EngineError as exc:
            if engine != "auto":
                raise
            _log.warning("engine %s %s failed, falling back: %s", choice.engine, choice.precision, exc)
            notes.append(f"{choice.engine} failed: {exc}")
            available.discard(choice.engine)
            continue
        _log.info("encoder %s runs on %s; worst probe patch cosine to torch fp32 %.4f", encoder.name, description, worst)
        return fast


def probe_pixels(encoder: ImageEncoder, generator_seed: int = 0) -> torch.Tensor:
    """4 normalised probe images (4, 3, S, S): noise, a flat belt-like gradient, a ring on it, smooth blobs.

    Flat, nearly featureless regions are where reduced precision hurts patch features most, so the
    probes include them (random noise alone hides bf16's error).
    """
    size = int(encoder.image_size_px)
    generator = torch.Generator().manual_seed(generator_seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    noise = torch.rand(3, size, size, generator=generator)
    flat = (0.2 + 0.1 * xs + 0.05 * ys).expand(3, size, size) + 0.01 * torch.randn(3, size, size, generator=generator)
    radius = ((xs - 0.5) ** 2 + (ys - 0.5) ** 2).sqrt()
    ring = flat.clone()
    ring[:, (radius > 0.15) & (radius < 0.33)] = 0.7
    coarse = torch.rand(1, 3, max(size // 8, 1), max(size // 8, 1), generator=generator)
    blobs = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]
    images = torch.stack([noise, flat, ring, blobs]).clamp(0, 1)  # (4, 3, S, S) in [0, 1]
    return encoder.normalize(images)


@torch.no_grad()
def self_check(
    fast: ImageEncoder, reference: ImageEncoder, *, strict: bool = True, cache: dict[str, EncoderOutput] | None = None
) -> float:
    """Worst per-patch cosine of ``fast`` to ``reference`` over every stage on :func:`probe_pixels`.

    Raises a :class:`CompileError` when the shapes differ, and when the cosine is below
    ``MIN_PATCH_COSINE[fast.precision]`` (with ``strict=False`` that is only logged). ``cache``
    keeps the reference's outputs between calls.
    """
    pixels = probe_pixels(reference)
    cache = {} if cache is None else cache
    if "want" not in cache:
        cache["want"] = reference(pixels)
    want, got = cache["want"], fast(pixels)
    shapes = [tuple(t.shape) for t in (*want.patch_features, want.global_vector)]
    shapes_got = [tuple(t.shape) for t in (*got.patch_features, got.global_vector)]
    if shapes != shapes_got:
        raise CompileError(f"{fast.engine_description}: output shapes {shapes_got} differ from torch's {shapes}")
    pairs = zip((*want.patch_features, want.global_vector), (*got.patch_features, got.global_vector), strict=True)
    worst = min(float(F.cosine_similarity(a.float(), b.float(), dim=1).min()) for a, b in pairs)
    floor = MIN_PATCH_COSINE.get(getattr(fast, "precision", "fp32"), MIN_PATCH_COSINE["fp32"])
    if not worst >= floor:  # also catches NaN
        message = f"{fast.engine} {fast.precision}: worst patch cosine to torch fp32 {worst:.4f} < {floor} on probe images"
        if strict:
            raise _AccuracyError(message)
        _log.warning("%s (kept: precision was requested explicitly)", message)
    return worst
