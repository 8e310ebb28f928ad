"""The zero-shot head: a trained text-aligned decoder plus the text anchors of a class name.

Gives M_zero for any class, bank or not (the unsupervised path of docs/method.md). F_text comes from the
encoder's own text tower (CLIP) or else the packaged all-MiniLM-L6-v2
(:func:`model.text_anchors.text_embedder_for`, the choice ``linesight train`` makes too); anchors
are cached per class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from model.decoder import TextAlignedDecoder, load_decoder
from model.encoders.base import ImageEncoder
from model.exceptions import ModelError

__all__ = ["DECODER_FILE", "ZeroShotHead", "load_zero_shot_head"]

DECODER_FILE = "decoder.safetensors"  # inside a `linesight train` checkpoint folder


@dataclass(frozen=True)
class ZeroShotHead:
    """A trained text-aligned decoder and the text features F_text (2, C_text) of a class name."""

    decoder: TextAlignedDecoder
    text_features: Callable[[str], torch.Tensor]  # product class -> F_text (2, C_text)

    def maps(self, stage_features: Sequence[torch.Tensor], product_class: str) -> torch.Tensor:
        """M_zero (B, S, S) in [0, 1] for rows of one class."""
        text = self.text_features(product_class).to(stage_features[0].device)  # anchors are cached on the CPU
        return self.decoder(stage_features, text).anomaly_map.float()

    def check_fits(self, encoder: ImageEncoder) -> None:
        """ModelError unless the decoder was trained on ``encoder``'s stages and image size."""
        decoder = self.decoder
        if tuple(decoder.stage_channels) != tuple(encoder.stage_channels) or decoder.image_size_px != encoder.image_size_px:
            raise ModelError(
                f"decoder trained for stage channels {tuple(decoder.stage_channels)} at {decoder.image_size_px} px "
                f"does not fit encoder {encoder.name!r} ({tuple(encoder.stage_channels)} at {encoder.image_size_px} px)"
            )


def load_zero_shot_head(path: Path | str, encoder: ImageEncoder) -> ZeroShotHead:
    """Load a checkpoint folder (or its ``decoder.safetensors``) as a head fitted to ``encoder``.

    Errors (:class:`ModelError`) name the file and what does not fit.
    """
    from model.text_anchors import TextAnchorCache, text_embedder_for

    source = Path(path)
    if source.is_dir():
        source = source / DECODER_FILE
    decoder = load_decoder(source).eval()
    anchors = TextAnchorCache(text_embedder_for(encoder))
    if anchors.embedder.dim != decoder.text_dim:
        raise ModelError(
            f"{source} expects {decoder.text_dim}-d text features; the text embedder "
            f"{getattr(anchors.embedder, 'name', '?')!r} gives {anchors.embedder.dim}"
        )
    head = ZeroShotHead(decoder, anchors.get)
    try:
        head.check_fits(encoder)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    return head
