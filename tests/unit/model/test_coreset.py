"""Greedy k-center coreset: size, uniqueness, determinism, coverage."""

from __future__ import annotations

import pytest
import torch

from model.coreset import coreset_size, greedy_coreset
from model.exceptions import ShapeError


def _covering_radius(points: torch.Tensor, picked: torch.Tensor) -> float:
    return float(torch.cdist(points, points[picked]).min(dim=1).values.max())


def test_size_unique_and_deterministic() -> None:
    points = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    first = greedy_coreset(points, 40, seed=3)
    assert first.shape == (40,)
    assert len(set(first.tolist())) == 40
    assert torch.equal(first, greedy_coreset(points, 40, seed=3))
    assert not torch.equal(first, greedy_coreset(points, 40, seed=4))


def test_covers_better_than_a_random_subset() -> None:
    generator = torch.Generator().manual_seed(1)
    points = torch.cat([torch.randn(300, 8, generator=generator), torch.randn(5, 8, generator=generator) + 12])
    picked = greedy_coreset(points, 20, seed=0, projection_dim=None)
    random_pick = torch.randperm(points.shape[0], generator=generator)[:20]
    assert _covering_radius(points, picked) < _covering_radius(points, random_pick)
    assert (picked >= 300).any()  # the far-away cluster is always represented


def test_projection_keeps_coverage_reasonable() -> None:
    points = torch.randn(300, 256, generator=torch.Generator().manual_seed(2))
    exact = _covering_radius(points, greedy_coreset(points, 30, projection_dim=None))
    projected = _covering_radius(points, greedy_coreset(points, 30, projection_dim=64))
    assert projected < 1.25 * exact


def test_all_rows_and_sizes() -> None:
    assert torch.equal(greedy_coreset(torch.randn(7, 3), 7), torch.arange(7))
    assert coreset_size(1000, 0.1) == 100
    assert coreset_size(3, 0.01) == 1


@pytest.mark.parametrize(("shape", "count"), [((0, 4), 1), ((10, 4), 11), ((10, 4), 0), ((10,), 1)])
def test_bad_arguments(shape: tuple[int, ...], count: int) -> None:
    with pytest.raises(ShapeError):
        greedy_coreset(torch.zeros(shape), count)


def test_bad_ratio_names_it() -> None:
    with pytest.raises(ShapeError, match="1.5"):
        coreset_size(10, 1.5)
