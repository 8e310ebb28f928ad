"""Mutual scoring (model/mutual.py): a patch seen in one frame only is anomalous, shared patches are normal."""

from __future__ import annotations

import pytest
import torch

from model.exceptions import ModelError, ShapeError
from model.mutual import MutualConfig, mutual_scores, window_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frames(count: int, odd: dict[int, int]) -> torch.Tensor:
    """(count, 8, 6, 6) features: every frame the same pattern plus noise; frame k gets an odd patch."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(1, 8, 6, 6, generator=generator).abs()
    frames = base + 0.05 * torch.randn(count, 8, 6, 6, generator=generator)
    for frame, channel in odd.items():
        frames[frame, :, 2, 3] = 0.0
        frames[frame, channel, 2, 3] = 5.0  # a direction no other patch has
    return frames


def test_the_frame_with_a_unique_patch_scores_highest_and_maps_are_in_unit_range():
    result = mutual_scores([_frames(10, {4: 0})], 24, MutualConfig(window=10))
    assert result.maps.shape == (10, 24, 24)
    assert 0.0 <= float(result.maps.min())
    assert float(result.maps.max()) <= 1.0
    assert int(result.scores.argmax()) == 4
    normal = torch.cat([result.scores[:4], result.scores[5:]])
    assert float(result.scores[4]) > 2 * float(normal.max())
    assert torch.allclose(result.scores, result.maps.flatten(1).amax(1))
    hot = result.maps[4].argmax()
    assert abs(int(hot) // 24 - 10) <= 4
    assert abs(int(hot) % 24 - 14) <= 4


def test_a_defect_repeated_in_a_few_frames_does_not_make_itself_normal():
    # the same odd patch in 2 of 12 frames: each finds its twin, but the mean of the lowest 30 % of
    # distances over the 11 other frames still holds 2 frames without it
    result = mutual_scores([_frames(12, {3: 1, 8: 1})], 24, MutualConfig(window=12, lowest_fraction=0.3))
    top_two = set(result.scores.argsort(descending=True)[:2].tolist())
    assert top_two == {3, 8}


def test_window_bounds_the_comparisons():
    assert window_of(0, 3, 16) == [1, 2]
    assert all(len(window_of(i, 100, 8)) == 7 and i not in window_of(i, 100, 8) for i in range(100))


def test_bad_inputs_are_named():
    with pytest.raises(ShapeError, match="at least 2 frames, got 1"):
        mutual_scores([torch.randn(1, 8, 4, 4)], 16)
    with pytest.raises(ModelError, match="window=1"):
        MutualConfig(window=1)
    with pytest.raises(ModelError, match=r"\(1, 2\)"):
        MutualConfig(r_list=(1, 2))
    with pytest.raises(ShapeError, match="stage 3"):
        mutual_scores([torch.randn(3, 8, 4, 4)], 16, MutualConfig(stages=(3,)))
