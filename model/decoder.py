"""The unsupervised (text-aligned) image decoder, map fusion and safetensors weight files.

docs/method.md, per stage i: F~_i = Linear_i(F_patch_i), normalise, logits = 100 * F~_i @ F_text^T,
upsample bilinearly to the image size S, softmax over {normal, abnormal}, keep the abnormal
channel; M = mean over stages (the paper sums; the mean keeps M in [0, 1]).

Weight files are safetensors with the module's configuration in the header metadata
(:func:`save_weights` / :func:`load_weights`, shared with the prompt learner); never pickle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from model.exceptions import ModelError, ShapeError

__all__ = [
    "FUSION_MODES",
    "DecoderOutput",
    "TextAlignedDecoder",
    "fuse",
    "load_decoder",
    "load_state_checked",
    "load_weights",
    "save_decoder",
    "save_weights",
]

FUSION_MODES: tuple[str, ...] = ("mean", "max", "few_only", "zero_only")
_DECODER_KIND = "linesight.text_aligned_decoder"


class DecoderOutput(NamedTuple):
    """Output of :class:`TextAlignedDecoder`; index 1 of the class axis is "abnormal"."""

    stage_logits: tuple[torch.Tensor, ...]  # per stage (B, 2, S, S): upsampled logits (for the losses)
    stage_maps: tuple[torch.Tensor, ...]  # per stage (B, S, S): softmax abnormal probability
    anomaly_map: torch.Tensor  # M (B, S, S) in [0, 1]: mean of the stage maps


class TextAlignedDecoder(nn.Module):
    """One Linear per stage (C_i -> C_text) comparing patch features with F_text (2, C_text).

    >>> decoder = TextAlignedDecoder((40, 80, 112, 192), text_dim=384, image_size_px=224)
    >>> features = [torch.randn(1, c, s, s) for c, s in [(40, 28), (80, 14), (112, 14), (192, 7)]]
    >>> decoder(features, torch.randn(2, 384)).anomaly_map.shape
    torch.Size([1, 224, 224])
    """

    def __init__(
        self,
        stage_channels: Sequence[int],
        text_dim: int,
        image_size_px: int = 224,
        logit_scale: float = 100.0,  # docs/method.md: logits = 100 * F~ @ F_text^T
    ) -> None:
        super().__init__()
        if not stage_channels or min(stage_channels) < 1 or text_dim < 1 or image_size_px < 1:
            raise ShapeError(
                f"bad decoder shape: stage_channels={tuple(stage_channels)}, text_dim={text_dim}, "
                f"image_size_px={image_size_px}"
            )
        self.stage_channels = tuple(int(c) for c in stage_channels)
        self.text_dim = int(text_dim)
        self.image_size_px = int(image_size_px)
        self.logit_scale = float(logit_scale)
        self.projections = nn.ModuleList(nn.Linear(c, self.text_dim) for c in self.stage_channels)  # Linear_i

    def config(self) -> dict[str, object]:
        """Constructor arguments (stored in weight files)."""
        return {
            "stage_channels": list(self.stage_channels),
            "text_dim": self.text_dim,
            "image_size_px": self.image_size_px,
            "logit_scale": self.logit_scale,
        }

    def forward(self, patch_features: Sequence[torch.Tensor], text_features: torch.Tensor) -> DecoderOutput:
        """Map stage features [(B, C_i, H_i, W_i)] and F_text (2, C) or per image (B, 2, C) to M (B, S, S)."""
        if len(patch_features) != len(self.projections):
            raise ShapeError(
                f"expected {len(self.projections)} stages of patch features, got {len(patch_features)}"
            )
        if text_features.shape[-2:] != (2, self.text_dim) or text_features.ndim not in (2, 3):
            raise ShapeError(
                f"expected F_text (2, {self.text_dim}) or (B, 2, {self.text_dim}), got {tuple(text_features.shape)}"
            )
        text = nn.functional.normalize(text_features.float(), dim=-1)
        size = (self.image_size_px, self.image_size_px)
        stage_logits, stage_maps = [], []
        for index, (features, projection) in enumerate(zip(patch_features, self.projections, strict=True)):
            if features.ndim != 4 or features.shape[1] != self.stage_channels[index]:
                raise ShapeError(
                    f"stage {index}: expected (B, {self.stage_channels[index]}, H, W), got {tuple(features.shape)}"
                )
            tokens = projection(features.flatten(2).transpose(1, 2).float())  # F~_i (B, H*W, C_text)
            tokens = nn.functional.normalize(tokens, dim=-1)
            if text.ndim == 2:
                logits = self.logit_scale * tokens @ text.T  # (B, H*W, 2)
            else:
                logits = self.logit_scale * torch.einsum("bnc,bkc->bnk", tokens, text)
            batch, _, height, width = features.shape
            logits = logits.transpose(1, 2).reshape(batch, 2, height, width)
            logits = nn.functional.interpolate(
                logits, size=size, mode="bilinear", align_corners=False
            )  # (B,2,S,S)
            stage_logits.append(logits)
            stage_maps.append(logits.softmax(dim=1)[:, 1])  # abnormal channel (B, S, S)
        anomaly_map = torch.stack(stage_maps).mean(0)  # M = mean over stages
        return DecoderOutput(tuple(stage_logits), tuple(stage_maps), anomaly_map)


def fuse(
    zero_shot_map: torch.Tensor | np.ndarray, few_shot_map: torch.Tensor | np.ndarray, mode: str = "mean"
) -> torch.Tensor | np.ndarray:
    """Combine the unsupervised map M_zero with the few-shot map M_few (same shape, same type back).

    Modes: ``mean`` (average), ``max`` (elementwise max), ``few_only``, ``zero_only``.

    >>> fuse(torch.zeros(2, 2), torch.ones(2, 2), "mean")
    tensor([[0.5000, 0.5000],
            [0.5000, 0.5000]])
    """
    if mode not in FUSION_MODES:
        raise ModelError(f"unknown fusion mode {mode!r}; choose one of {list(FUSION_MODES)}")
    if tuple(zero_shot_map.shape) != tuple(few_shot_map.shape):
        raise ShapeError(
            f"fusion needs maps of one shape, got zero-shot {tuple(zero_shot_map.shape)} "
            f"and few-shot {tuple(few_shot_map.shape)}"
        )
    if mode == "few_only":
        return few_shot_map
    if mode == "zero_only":
        return zero_shot_map
    if isinstance(zero_shot_map, np.ndarray) and isinstance(few_shot_map, np.ndarray):
        if mode == "mean":
            return ((zero_shot_map + few_shot_map) / 2).astype(np.result_type(zero_shot_map, few_shot_map))
        return np.maximum(zero_shot_map, few_shot_map)
    zero, few = torch.as_tensor(zero_shot_map), torch.as_tensor(few_shot_map)
    return (zero + few) / 2 if mode == "mean" else torch.maximum(zero, few)


# --- weight files (shared with model/prompt_learner.py) -------------------------------------------


def save_weights(module: nn.Module, path: Path | str, kind: str, config: Mapping[str, object]) -> str:
    """Write ``module``'s state dict as safetensors with ``kind`` and ``config`` in the metadata; return sha256."""
    from safetensors.torch import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    save_file(tensors, str(target), metadata={"kind": kind, "config": json.dumps(dict(config))})
    return hashlib.sha256(target.read_bytes()).hexdigest()


def load_weights(path: Path | str, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Read a :func:`save_weights` file: (tensors, config); errors name the file and what is wrong."""
    from safetensors import SafetensorError, safe_open

    source = Path(path)
    if not source.is_file():
        raise ModelError(f"weights file {source} does not exist")
    try:
        with safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"{source} is not a readable safetensors file: {exc}") from exc
    if metadata.get("kind") != kind:
        raise ModelError(f"{source} holds {metadata.get('kind')!r} weights, expected {kind!r}")
    try:
        config = json.loads(metadata.get("config", "{}"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{source}: unreadable config metadata: {exc}") from exc
    return tensors, config


def load_state_checked(module: nn.Module, tensors: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Load ``tensors`` into ``module`` after checking names and shapes (errors name the tensor)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelError(f"{source}: missing tensors {missing}, unexpected tensors {unexpected}")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ModelError(
                f"{source}: tensor {name!r} has shape {tuple(tensor.shape)} but the model expects "
                f"{tuple(expected[name].shape)}"
            )
    module.load_state_dict(dict(tensors))


def save_decoder(decoder: TextAlignedDecoder, path: Path | str) -> str:
    """Save the decoder's weights and configuration as safetensors; return the file's sha256 hex.

    >>> save_decoder(TextAlignedDecoder((8,) * 4, 16), "/tmp/decoder.safetensors")  # doctest: +SKIP
    """
    return save_weights(decoder, path, _DECODER_KIND, decoder.config())


def load_decoder(path: Path | str, decoder: TextAlignedDecoder | None = None) -> TextAlignedDecoder:
    """Load a decoder file into ``decoder`` (shapes checked) or into a new one built from its metadata.

    >>> load_decoder("/tmp/decoder.safetensors").text_dim  # doctest: +SKIP
    16
    """
    tensors, config = load_weights(path, _DECODER_KIND)
    if decoder is None:
        try:
            decoder = TextAlignedDecoder(
                stage_channels=[int(c) for c in config["stage_channels"]],  # type: ignore[union-attr]
                text_dim=int(config["text_dim"]),  # type: ignore[arg-type]
                image_size_px=int(config["image_size_px"]),  # type: ignore[arg-type]
                logit_scale=float(config.get("logit_scale", 100.0)),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: decoder config metadata {config} is incomplete: {exc}") from exc
    load_state_checked(decoder, tensors, path)
    return decoder
