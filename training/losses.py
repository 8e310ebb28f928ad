"""Training losses (docs/method.md): CE on answer tokens + per stage (Focal(gamma=2) + Dice) on the decoder maps.

Decoder maps are *probabilities* of "abnormal" in [0, 1] (the softmax's abnormal channel), one per
stage, shape (B, H, W) or (B, 1, H, W); the ground-truth mask is (B, H, W) in {0, 1}. Maps of another
size are resized bilinearly to the mask's size. Pure torch.

>>> import torch
>>> mask = torch.zeros(1, 8, 8); mask[0, 2:4, 2:4] = 1
>>> float(focal_loss(mask, mask)) < 1e-6 and float(dice_loss(mask, mask)) < 1e-6
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from linesight.errors import ConfigError

__all__ = ["IGNORE_INDEX", "LossBreakdown", "LossWeights", "answer_loss", "anomalygpt_loss", "dice_loss", "focal_loss"]

IGNORE_INDEX = -100  # label of tokens that are not part of the answer (prompt, image, padding)
_EPS = 1e-6


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms (docs/method.md: all 1)."""

    focal: float = 1.0  # per-stage focal loss on the decoder maps
    dice: float = 1.0  # per-stage dice loss on the decoder maps
    answer: float = 1.0  # cross-entropy on answer tokens


class LossBreakdown(NamedTuple):
    """The weighted total (for ``backward``) and each unweighted term (for logging)."""

    total: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    answer: torch.Tensor


def _as_bhw(prob: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if prob.dim() == 4:
        if prob.shape[1] != 1:
            raise ConfigError(f"anomaly map must be (B, H, W) or (B, 1, H, W), got {tuple(prob.shape)}")
        prob = prob[:, 0]
    if target.dim() == 4:
        target = target[:, 0]
    if prob.dim() != 3 or target.dim() != 3 or prob.shape[0] != target.shape[0]:
        raise ConfigError(f"anomaly map {tuple(prob.shape)} and mask {tuple(target.shape)} do not match")
    if prob.shape[-2:] != target.shape[-2:]:
        prob = F.interpolate(prob[:, None], size=target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return prob, target.to(prob.dtype)


def focal_loss(prob: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss, mean over pixels: ``-(y (1-p)^g log p + (1-y) p^g log(1-p))``.

    >>> p = torch.full((1, 2, 2), 0.5); y = torch.ones(1, 2, 2)
    >>> round(float(focal_loss(p, y)), 4)  # 0.25 * ln 2
    0.1733
    """
    prob, target = _as_bhw(prob, target)
    p = prob.clamp(_EPS, 1.0 - _EPS)
    positive = target * (1.0 - p).pow(gamma) * torch.log(p)
    negative = (1.0 - target) * p.pow(gamma) * torch.log(1.0 - p)
    return -(positive + negative).mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss per image, averaged: ``1 - (2 sum(p y) + s) / (sum p + sum y + s)``.

    A normal image (empty mask) predicted as all zeros gives 0.

    >>> y = torch.zeros(1, 4, 4); y[0, :2] = 1
    >>> round(float(dice_loss(1 - y, y)), 4)  # no overlap: 1 - 1 / 17
    0.9412
    """
    prob, target = _as_bhw(prob, target)
    intersection = (prob * target).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + target.flatten(1).sum(1)
    return (1.0 - (2.0 * intersection + smooth) / (total + smooth)).mean()


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Causal-LM cross-entropy on answer tokens only.

    ``logits`` (B, T, V) at position t predict token t + 1, so they are shifted against ``labels``
    (B, T) as in transformers; labels equal to ``ignore_index`` (prompt, image, padding) are skipped.

    >>> logits = torch.zeros(1, 3, 5); labels = torch.tensor([[IGNORE_INDEX, 2, 4]])
    >>> round(float(answer_loss(logits, labels)), 4)  # uniform over 5 tokens: ln 5
    1.6094
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ConfigError(f"logits (B, T, V) {tuple(logits.shape)} and labels (B, T) {tuple(labels.shape)} do not match")
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shifted_labels = labels[:, 1:].reshape(-1)
    if not bool((shifted_labels != ignore_index).any()):
        raise ConfigError("answer_loss got no answer tokens: every label is ignore_index")
    return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=ignore_index)


def anomalygpt_loss(
    stage_maps: Sequence[torch.Tensor],
    mask: torch.Tensor,
    answer_logits: torch.Tensor | None = None,
    answer_labels: torch.Tensor | None = None,
    weights: LossWeights = LossWeights(),  # noqa: B008 (frozen dataclass: safe default)
    gamma: float = 2.0,
) -> LossBreakdown:
    """Loss = w_a CE(answer) + sum over stages (w_f Focal + w_d Dice); the answer term is 0 when no logits.

    >>> y = torch.zeros(2, 8, 8); y[1, :4, :4] = 1
    >>> round(float(anomalygpt_loss([y, y], y).total), 4)
    0.0
    """
    if not stage_maps:
        raise ConfigError("anomalygpt_loss needs at least one stage map")
    focal = torch.stack([focal_loss(m, mask, gamma) for m in stage_maps]).sum()
    dice = torch.stack([dice_loss(m, mask) for m in stage_maps]).sum()
    if answer_logits is not None:
        if answer_labels is None:
            raise ConfigError("answer_logits given without answer_labels")
        answer = answer_loss(answer_logits, answer_labels)
    else:
        answer = focal.new_zeros(())
    total = weights.focal * focal + weights.dice * dice + weights.answer * answer
    return LossBreakdown(total, focal.detach(), dice.detach(), answer.detach())
