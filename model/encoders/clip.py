"""CLIP (transformers ``CLIPModel``) from a local folder as a 4-stage frozen encoder with a text tower.

docs/method.md: "stages = blocks 8/16/24/32 [of a 32-block ViT]; CLS token dropped. For a 12-block
ViT use blocks 3/6/9/12". The stages are ``hidden_states[b]`` of the vision tower for 4 evenly
spaced blocks b (``hidden_states[0]`` is the embedding output); the global image vector is CLIP's
``image_embeds`` (pooled CLS through ``visual_projection``). The text tower is exposed as a
:class:`ClipTextEmbedder` for the state-level text anchors F_text (model/text_anchors.py).

No weights ship with linesight: put a checkpoint saved with ``CLIPModel.save_pretrained`` (and
optionally its tokenizer/processor) in a folder and pass it as ``path`` (``LINESIGHT_ENCODER_PATH``).
The helpers at the bottom are shared with the DINOv2 backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from model.encoders.base import EncoderOutput, ImageEncoder
from model.exceptions import EncoderNotFoundError, ShapeError

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ClipTextEmbedder",
    "ClipVisionEncoder",
    "check_checkpoint_dir",
    "evenly_spaced_blocks",
    "read_normalization",
    "tokens_to_map",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipTextEmbedder:
    """CLIP's text tower: sentences -> projected text embeddings (N, C_text), L2-normalised.

    Implements the :class:`model.text_anchors.TextEmbedder` interface (``name``, ``dim``, ``embed``).
    """

    def __init__(self, clip_model: nn.Module, tokenizer: object, name: str = "clip-text") -> None:
        self.name = name
        self._model = clip_model
        self._tokenizer = tokenizer
        self.dim = int(clip_model.config.projection_dim)
        self._max_tokens = int(clip_model.config.text_config.max_position_embeddings)

    @torch.no_grad()
    def embed(self, sentences: Sequence[str]) -> torch.Tensor:
        """Embed sentences into (N, C_text) unit vectors."""
        batch = self._tokenizer(
            list(sentences), padding=True, truncation=True, max_length=self._max_tokens, return_tensors="pt"
        )
        device = next(self._model.parameters()).device
        out = self._model.text_model(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
        )
        features = self._model.text_projection(out.pooler_output)  # (N, C_text)
        return nn.functional.normalize(features.float(), dim=-1)


class ClipVisionEncoder(ImageEncoder):
    """Frozen CLIP vision tower: 4 stages of patch features (B, C, S/p, S/p) and ``image_embeds``.

    >>> encoder = ClipVisionEncoder("/models/clip-vit-b16")  # doctest: +SKIP
    >>> [tuple(f.shape[1:]) for f in encoder(torch.zeros(1, 3, 224, 224)).patch_features]  # doctest: +SKIP
    [(768, 14, 14), (768, 14, 14), (768, 14, 14), (768, 14, 14)]
    """

    name = "clip"

    def __init__(self, path: Path | str | None, image_size_px: int = 224) -> None:
        super().__init__()
        from transformers import CLIPModel

        folder = check_checkpoint_dir(path, "clip", "CLIP", "CLIPModel")
        model_type = _model_type(folder)
        if model_type != "clip":
            raise EncoderNotFoundError(
                f"{folder}/config.json has model_type {model_type!r}; the clip encoder needs a CLIPModel "
                "checkpoint (model_type 'clip'), e.g. saved with CLIPModel.save_pretrained"
            )
        try:
            self.clip = CLIPModel.from_pretrained(folder, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise EncoderNotFoundError(f"cannot load a CLIP checkpoint from {folder}: {exc}") from exc
        vision = self.clip.config.vision_config
        self.patch_size_px = int(vision.patch_size)
        _check_image_size(image_size_px, self.patch_size_px, folder)
        self.image_size_px = int(image_size_px)
        self._interpolate = self.image_size_px != int(vision.image_size)  # positional embeddings resampled
        self.stage_blocks = evenly_spaced_blocks(int(vision.num_hidden_layers))
        self.stage_channels = (int(vision.hidden_size),) * 4
        self.global_dim = int(self.clip.config.projection_dim)
        mean, std = read_normalization(folder, CLIP_MEAN, CLIP_STD)
        self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        tokenizer = _load_tokenizer(folder)
        self.text_embedder = ClipTextEmbedder(self.clip, tokenizer) if tokenizer is not None else None

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> CLIP-normalised pixels."""
        return (pixels - self._mean) / self._std

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> EncoderOutput:
        """Encode (B, 3, S, S) pixels: stage i = ``hidden_states[stage_blocks[i]]`` without CLS."""
        _check_pixels(pixels, self.image_size_px)
        out = self.clip.vision_model(
            pixel_values=pixels, output_hidden_states=True, interpolate_pos_encoding=self._interpolate
        )
        side = self.image_size_px // self.patch_size_px
        patches = tuple(tokens_to_map(out.hidden_states[b], side) for b in self.stage_blocks)
        image_embeds = self.clip.visual_projection(out.pooler_output)  # (B, C_global)
        return EncoderOutput(patch_features=patches, global_vector=image_embeds)


# --- helpers shared with the DINOv2 backend ----------------------------------------------------


def evenly_spaced_blocks(num_blocks: int, stages: int = 4) -> tuple[int, ...]:
    """Indices into ``hidden_states`` of ``stages`` evenly spaced blocks (1-based; 0 is the embedding).

    >>> evenly_spaced_blocks(12), evenly_spaced_blocks(32), evenly_spaced_blocks(2)
    ((3, 6, 9, 12), (8, 16, 24, 32), (1, 1, 2, 2))
    """
    if num_blocks < 1:
        raise ShapeError(f"a ViT needs >= 1 block, got num_hidden_layers={num_blocks}")
    return tuple(math.ceil(num_blocks * (k + 1) / stages) for k in range(stages))


def tokens_to_map(hidden: torch.Tensor, side: int) -> torch.Tensor:
    """(B, N, C) tokens whose last ``side**2`` are patches -> (B, C, side, side); CLS/registers dropped."""
    batch, count, channels = hidden.shape
    if count < side * side:
        raise ShapeError(f"expected >= {side * side} tokens for a {side}x{side} patch grid, got {count}")
    patches = hidden[:, count - side * side :, :]  # (B, side*side, C)
    return patches.transpose(1, 2).reshape(batch, channels, side, side).contiguous()


def check_checkpoint_dir(path: Path | str | None, backend: str, family: str, model_class: str) -> Path:
    """Return ``path`` as a folder holding a transformers checkpoint, else raise a helpful error."""
    hint = (
        f"put a transformers {family} checkpoint (config.json + model.safetensors) in {{}}, "
        f"e.g. saved with {model_class}.save_pretrained"
    )
    if path is None:
        raise EncoderNotFoundError(
            f"the {backend} encoder needs a local folder (LINESIGHT_ENCODER_PATH): "
            + hint.format("that folder")
        )
    folder = Path(path).expanduser()
    if not folder.is_dir() or not any(folder.iterdir()):
        raise EncoderNotFoundError(
            f"{backend} encoder folder {folder} is missing or empty: " + hint.format(folder)
        )
    if not (folder / "config.json").is_file():
        raise EncoderNotFoundError(f"{folder} has no config.json: " + hint.format(folder))
    if not any(folder.glob("*.safetensors")):
        raise EncoderNotFoundError(f"{folder} has no *.safetensors weights: " + hint.format(folder))
    return folder


def read_normalization(
    folder: Path, default_mean: Sequence[float], default_std: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``image_mean``/``image_std`` from ``preprocessor_config.json`` if present, else the defaults."""
    config_file = folder / "preprocessor_config.json"
    mean, std = tuple(default_mean), tuple(default_std)
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        mean = tuple(float(v) for v in config.get("image_mean", mean))
        std = tuple(float(v) for v in config.get("image_std", std))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise EncoderNotFoundError(
            f"{config_file}: image_mean/image_std must be 3 values (std > 0), got {mean}, {std}"
        )
    return mean, std


def _model_type(folder: Path) -> str | None:
    return json.loads((folder / "config.json").read_text()).get("model_type")


def _load_tokenizer(folder: Path) -> object | None:
    """The tokenizer saved next to the weights, or None when the folder has none."""
    names = ("tokenizer.json", "vocab.json", "tokenizer_config.json")
    if not any((folder / name).is_file() for name in names):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError):
        return None


def _check_image_size(image_size_px: int, patch_size_px: int, folder: Path) -> None:
    if image_size_px <= 0 or image_size_px % patch_size_px:
        raise ShapeError(
            f"image_size_px={image_size_px} must be a positive multiple of the patch size "
            f"{patch_size_px} of the checkpoint in {folder}"
        )


def _check_pixels(pixels: torch.Tensor, image_size_px: int) -> None:
    if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[2:] != (image_size_px, image_size_px):
        raise ShapeError(
            f"expected pixels (B, 3, {image_size_px}, {image_size_px}), got {tuple(pixels.shape)}"
        )
