"""Encoder backends behind one interface (:class:`model.encoders.base.ImageEncoder`).

``build_encoder(name, path)`` picks a backend by name; each backend lives in its own module and
is registered in ``_BACKENDS`` below.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from model.encoders.base import EncoderOutput, ImageEncoder
from model.exceptions import EncoderNotFoundError

__all__ = ["EncoderOutput", "ImageEncoder", "build_encoder", "encoder_names"]


def _efficientnet(path: Path | None, image_size_px: int) -> ImageEncoder:
    from model.encoders.efficientnet import EfficientNetLiteEncoder

    return EfficientNetLiteEncoder(pretrained=True, image_size_px=image_size_px)


def _clip(path: Path | None, image_size_px: int) -> ImageEncoder:
    from model.encoders.clip import ClipVisionEncoder

    return ClipVisionEncoder(path, image_size_px=image_size_px)


def _dinov2(path: Path | None, image_size_px: int) -> ImageEncoder:
    from model.encoders.dinov2 import Dinov2Encoder

    return Dinov2Encoder(path, image_size_px=image_size_px)


_BACKENDS: dict[str, Callable[[Path | None, int], ImageEncoder]] = {
    "efficientnet-lite0": _efficientnet,
    "clip": _clip,  # needs path: a CLIPModel.save_pretrained folder
    "dinov2": _dinov2,  # needs path: a Dinov2Model.save_pretrained folder
}


def encoder_names() -> list[str]:
    """Names accepted by :func:`build_encoder`."""
    return sorted(_BACKENDS)


def build_encoder(name: str, path: Path | None = None, image_size_px: int = 224) -> ImageEncoder:
    """Build the frozen encoder ``name`` (in eval mode, no grad), loading weights from ``path`` if it needs one.

    >>> build_encoder("efficientnet-lite0").name
    'efficientnet-lite0'
    """
    try:
        factory = _BACKENDS[name]
    except KeyError:
        raise EncoderNotFoundError(f"unknown encoder {name!r}; choose one of {encoder_names()}") from None
    encoder = factory(path, image_size_px)
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return encoder
