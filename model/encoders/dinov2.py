"""DINOv2 (transformers ``Dinov2Model``) from a local folder as a 4-stage frozen encoder.

Same stage rule as CLIP (docs/method.md: 4 evenly spaced blocks, 12 blocks -> 3/6/9/12, CLS
dropped); the global image vector is the pooler output (the layer-normed CLS token). DINOv2
interpolates its positional embeddings, so any multiple of the patch size works as input size
(AnomalyDINO uses DINOv2-S at 672 px). No text tower: text anchors come from MiniLM.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from model.encoders.base import EncoderOutput, ImageEncoder
from model.encoders.clip import (
    _check_image_size,
    _check_pixels,
    check_checkpoint_dir,
    evenly_spaced_blocks,
    read_normalization,
    tokens_to_map,
)
from model.exceptions import EncoderNotFoundError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Dinov2Encoder"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Dinov2Encoder(ImageEncoder):
    """Frozen DINOv2: 4 stages of patch features (B, C, S/p, S/p) and the CLS pooler output.

    >>> encoder = Dinov2Encoder("/models/dinov2-small", image_size_px=224)  # doctest: +SKIP
    >>> encoder(torch.zeros(1, 3, 224, 224)).global_vector.shape  # doctest: +SKIP
    torch.Size([1, 384])
    """

    name = "dinov2"
    text_embedder = None  # no text tower

    def __init__(self, path: Path | str | None, image_size_px: int = 224) -> None:
        super().__init__()
        from transformers import Dinov2Model

        folder = check_checkpoint_dir(path, "dinov2", "DINOv2", "Dinov2Model")
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        if model_type != "dinov2":
            raise EncoderNotFoundError(
                f"{folder}/config.json has model_type {model_type!r}; the dinov2 encoder needs a Dinov2Model "
                "checkpoint (model_type 'dinov2'), e.g. saved with Dinov2Model.save_pretrained"
            )
        try:
            self.dinov2 = Dinov2Model.from_pretrained(folder, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise EncoderNotFoundError(f"cannot load a DINOv2 checkpoint from {folder}: {exc}") from exc
        config = self.dinov2.config
        self.patch_size_px = int(config.patch_size)
        _check_image_size(image_size_px, self.patch_size_px, folder)
        self.image_size_px = int(image_size_px)
        self.stage_blocks = evenly_spaced_blocks(int(config.num_hidden_layers))
        self.stage_channels = (int(config.hidden_size),) * 4
        self.global_dim = int(config.hidden_size)
        mean, std = read_normalization(folder, IMAGENET_MEAN, IMAGENET_STD)
        self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> ImageNet-normalised pixels (or the checkpoint's own statistics)."""
        return (pixels - self._mean) / self._std

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> EncoderOutput:
        """Encode (B, 3, S, S) pixels: stage i = ``hidden_states[stage_blocks[i]]`` without CLS."""
        _check_pixels(pixels, self.image_size_px)
        out = self.dinov2(pixel_values=pixels, output_hidden_states=True)
        side = self.image_size_px // self.patch_size_px
        patches = tuple(tokens_to_map(out.hidden_states[b], side) for b in self.stage_blocks)
        return EncoderOutput(patch_features=patches, global_vector=out.pooler_output)  # (B, C)
