"""One way to build the scoring stack: encoder (+ engine) -> optional trained decoder -> Detector.

The stream's inference actors, ``/api/inspect``, ``linesight inspect``, ``eval``, ``bench`` and bank
building all call :func:`build_detector` with a :class:`DetectorConfig`, so they score a frame the
same way (the same encoder backend and precision, the same fusion). The app builds the config from
its settings (:meth:`DetectorConfig.from_settings`); nothing here reads settings itself.

>>> detector = build_detector(DetectorConfig(engine="torch"))
>>> detector.encoder.name, detector.fusion
('efficientnet-lite0', 'few_only')
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from model.detector import DETECTOR_FUSIONS, Detector
from model.exceptions import ModelError

__all__ = ["DetectorConfig", "build_detector", "build_scoring_encoder", "default_engine_cache_dir"]

log = logging.getLogger(__name__)


def default_engine_cache_dir() -> Path:
    """Where exported encoders are cached: ``$LINESIGHT_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/linesight/engine``
    (``~/.cache/...``); shared by every data folder, so each encoder/size is exported once per machine."""
    import os

    explicit = os.environ.get("LINESIGHT_ENGINE_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "linesight" / "engine"


@dataclass(frozen=True)
class DetectorConfig:
    """How frames are scored; every field has the default the product runs with."""

    encoder: str = "efficientnet-lite0"  # encoder backend name (model.encoders.encoder_names())
    encoder_path: Path | None = None  # local folder for clip/dinov2 (from_pretrained)
    image_size_px: int = 224  # model input side S; tiled banks cut frames into tiles of their tile_px
    fusion: str = "few_only"  # few_only | mean | max (measured: few_only, README)
    checkpoint_dir: Path | None = None  # `linesight train` folder: the decoder for fusion and zero-shot classes
    zero_shot: bool = False  # load the trained decoder even with few_only (classes with no bank)
    engine: str = "auto"  # auto | torch | onnxruntime | openvino (model/engine)
    precision: str = "auto"  # auto | fp32 | bf16
    engine_cache_dir: Path | None = None  # exported models; None = no acceleration cache (torch only)
    threads: int = 1  # intra-op threads of the encoder
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.fusion not in DETECTOR_FUSIONS:
            raise ModelError(f"unknown fusion {self.fusion!r}; choose one of {list(DETECTOR_FUSIONS)}")
        if (self.fusion != "few_only" or self.zero_shot) and self.checkpoint_dir is None:
            raise ModelError(
                f"fusion={self.fusion!r} / zero_shot={self.zero_shot} need checkpoint_dir (a `linesight train` folder)"
            )
        if self.threads < 1:
            raise ModelError(f"threads must be >= 1, got {self.threads}")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> DetectorConfig:
        """The config of the app's ``Settings`` (duck-typed), with ``overrides`` (e.g. ``zero_shot=True``)."""
        values = {
            "encoder": settings.encoder,
            "encoder_path": settings.encoder_path,
            "image_size_px": settings.image_size_px,
            "fusion": settings.map_fusion,
            "checkpoint_dir": settings.checkpoint_dir,
            "zero_shot": bool(getattr(settings, "zero_shot_classes", "")),
            "engine": getattr(settings, "engine", "torch"),
            "precision": getattr(settings, "precision", "auto"),
            "engine_cache_dir": default_engine_cache_dir(),
            "threads": settings.torch_threads,
            "device": "cuda" if getattr(settings, "device", "cpu") == "cuda" else "cpu",
        }
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> DetectorConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)


def build_scoring_encoder(config: DetectorConfig):
    """The frozen encoder of ``config``, on the chosen engine when one is available (else torch, logged)."""
    import torch

    from model.encoders import build_encoder

    torch.set_num_threads(config.threads)
    encoder = build_encoder(config.encoder, config.encoder_path, config.image_size_px)
    if config.engine == "torch" or config.engine_cache_dir is None or config.device != "cpu":
        return encoder
    try:
        from model.engine import accelerate
    except ImportError:  # the engine package is optional at import time
        log.info("engine %r unavailable (model.engine not importable): scoring with torch", config.engine)
        return encoder
    return accelerate(encoder, engine=config.engine, precision=config.precision, cache_dir=config.engine_cache_dir,
                      threads=config.threads)


def build_detector(config: DetectorConfig = DetectorConfig(), *, encoder: Any | None = None) -> Detector:  # noqa: B008
    """The :class:`Detector` of ``config``; ``encoder`` reuses an already built one (e.g. a bank manager's)."""
    encoder = encoder if encoder is not None else build_scoring_encoder(config)
    zero_shot = None
    if config.fusion != "few_only" or config.zero_shot:
        from model.zero_shot import load_zero_shot_head

        zero_shot = load_zero_shot_head(config.checkpoint_dir, encoder)  # type: ignore[arg-type]
        log.info("detector: trained decoder from %s (fusion %s)", config.checkpoint_dir, config.fusion)
    detector = Detector(encoder, device=config.device, zero_shot=zero_shot, fusion=config.fusion)
    log.info("detector: %s at %d px on %s", encoder.name, encoder.image_size_px,
             getattr(encoder, "engine_description", "torch fp32"))
    return detector
