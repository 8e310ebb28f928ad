"""Positional matching: a tile is compared with the references' tiles around its own position only."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from model.matching import PatchBank, tile_maps


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def test_a_tile_identical_to_its_reference_scores_zero():
    features = torch.randn(3, 8, 4, 4)  # 3 tiles of a 1 x 3 grid
    rows = _unit(features.flatten(2).transpose(1, 2)).reshape(-1, 8)
    ids = torch.arange(3, dtype=torch.int32).repeat_interleave(16)
    bank = PatchBank((rows,), (ids,), (1, 3))
    maps = tile_maps([features], bank, [0, 1, 2], 16)
    assert maps.shape == (3, 16, 16)
    assert float(maps.max()) < 1e-4


def test_a_pattern_that_exists_only_far_away_is_still_anomalous():
    near = torch.zeros(1, 4, 2, 2)
    near[:, 0] = 1.0  # tile 0 of the references: direction e0
    far = torch.zeros(1, 4, 2, 2)
    far[:, 1] = 1.0  # tile 4 (two steps away): direction e1
    rows = torch.cat([_unit(near.flatten(2).transpose(1, 2))[0], _unit(far.flatten(2).transpose(1, 2))[0]])
    ids = torch.tensor([0] * 4 + [4] * 4, dtype=torch.int32)
    tiled = PatchBank((rows,), (ids,), (1, 5))
    untiled = PatchBank((rows,), None, None)
    query = far.clone()  # the far pattern, shown at tile 0's position
    assert float(tile_maps([query], tiled, [0], 8, blur_sigma_px=0).min()) > 0.9  # cosine 0 -> M = 1
    assert float(tile_maps([query], untiled, None, 8, blur_sigma_px=0).max()) < 1e-4  # a global bank forgives it


def test_candidates_are_the_neighbourhood_and_cached():
    ids = torch.arange(9, dtype=torch.int32)  # a 3 x 3 grid, one row per tile
    rows = _unit(torch.randn(9, 4))
    bank = PatchBank((rows,), (ids,), (3, 3))
    corner = bank.candidates(0, 0)
    assert corner.shape[0] == 4  # tiles 0, 1, 3, 4
    assert bank.candidates(0, 4).shape[0] == 9  # the centre sees all
    assert bank.candidates(0, 0) is corner
