"""Losses on known inputs: perfect predictions give ~0, hand-computed values, gradients flow."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from linesight.errors import ConfigError
from training.losses import IGNORE_INDEX, LossWeights, anomalygpt_loss, answer_loss, dice_loss, focal_loss


@pytest.fixture
def mask() -> torch.Tensor:
    target = torch.zeros(2, 16, 16)
    target[0, 4:8, 4:10] = 1  # image 1 stays normal
    return target


def test_perfect_maps_give_zero_and_inverted_maps_give_large_losses(mask):
    assert float(focal_loss(mask, mask)) < 1e-6
    assert float(dice_loss(mask, mask)) < 1e-6
    assert float(focal_loss(1 - mask, mask)) > 5.0
    assert float(dice_loss(1 - mask, mask)) > 0.9


def test_focal_matches_the_formula_and_down_weights_easy_pixels():
    target = torch.tensor([[[1.0, 0.0]]])
    prob = torch.tensor([[[0.8, 0.3]]])
    expected = -(0.2**2 * math.log(0.8) + 0.3**2 * math.log(0.7)) / 2
    assert float(focal_loss(prob, target)) == pytest.approx(expected, rel=1e-5)
    bce = F.binary_cross_entropy(prob, target)
    assert float(focal_loss(prob, target)) < float(bce)  # gamma = 2 shrinks well-classified pixels
    assert float(focal_loss(prob, target, gamma=0.0)) == pytest.approx(float(bce), rel=1e-5)


def test_dice_matches_the_formula():
    target = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    prob = torch.tensor([[[0.5, 1.0, 0.5, 0.0]]])
    # 1 - (2 * 1.5 + 1) / (2.0 + 2.0 + 1)
    assert float(dice_loss(prob, target)) == pytest.approx(1 - 4 / 5)


def test_answer_loss_shifts_logits_and_ignores_non_answer_tokens():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 6, IGNORE_INDEX]])
    expected = F.cross_entropy(logits[0, 1:3], torch.tensor([3, 6]))  # positions 1, 2 predict tokens 2, 3
    assert float(answer_loss(logits, labels)) == pytest.approx(float(expected), rel=1e-6)
    perfect = torch.full((1, 5, 7), -30.0)
    perfect[0, 1, 3] = perfect[0, 2, 6] = 30.0
    assert float(answer_loss(perfect, labels)) < 1e-6
    with pytest.raises(ConfigError, match="no answer tokens"):
        answer_loss(logits, torch.full((1, 5), IGNORE_INDEX))


def test_total_loss_sums_stages_applies_weights_and_gradients_flow(mask):
    logits = torch.zeros(2, 1, 8, 8, requires_grad=True)  # half-size maps: resized to the mask
    maps = [torch.sigmoid(logits), torch.sigmoid(logits * 2)]
    answer_logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.tensor([[IGNORE_INDEX, 1, 2, 3], [IGNORE_INDEX, IGNORE_INDEX, 4, 0]])
    out = anomalygpt_loss(maps, mask, answer_logits, labels)
    expected = (
        sum(focal_loss(m, mask) for m in maps) + sum(dice_loss(m, mask) for m in maps) + answer_loss(answer_logits, labels)
    )
    assert float(out.total.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    out.total.backward()
    assert logits.grad is not None
    assert float(logits.grad.abs().sum()) > 0
    assert answer_logits.grad is not None
    assert float(answer_logits.grad.abs().sum()) > 0
    only_dice = anomalygpt_loss(maps, mask, answer_logits, labels, LossWeights(focal=0.0, dice=1.0, answer=0.0))
    assert float(only_dice.total.detach()) == pytest.approx(float(out.dice), rel=1e-6)


def test_mismatched_shapes_are_rejected(mask):
    with pytest.raises(ConfigError, match=r"\(3, 16, 16\)"):
        focal_loss(torch.zeros(3, 16, 16), mask)
    with pytest.raises(ConfigError, match="at least one stage"):
        anomalygpt_loss([], mask)
