"""Regions of a mask and their 3x3 position names."""

from __future__ import annotations

import numpy as np
import pytest

from model.exceptions import ShapeError
from model.positions import POSITION_NAMES, find_regions, position_name


@pytest.mark.parametrize(("cell", "name"), list(enumerate(POSITION_NAMES)))
def test_every_grid_cell(cell: int, name: str) -> None:
    mask = np.zeros((90, 90), np.uint8)
    row, col = divmod(cell, 3)
    mask[row * 30 + 10 : row * 30 + 20, col * 30 + 10 : col * 30 + 20] = 1
    regions = find_regions(mask)
    assert [r.position for r in regions] == [name]
    assert regions[0].area_px == 100
    assert regions[0].bbox == (row * 30 + 10, col * 30 + 10, 10, 10)


def test_two_regions_largest_first() -> None:
    mask = np.zeros((224, 224), np.uint8)
    mask[150:170, 10:30] = 1  # bottom left, 400 px
    mask[20:60, 180:220] = 1  # top right, 1600 px
    regions = find_regions(mask)
    assert [(r.position, r.area_px) for r in regions] == [("top right", 1600), ("bottom left", 400)]


def test_specks_are_dropped_but_the_largest_region_is_kept() -> None:
    mask = np.zeros((224, 224), np.uint8)
    mask[100:130, 100:130] = 1
    mask[5, 5] = 1  # a one-pixel speck
    assert [r.position for r in find_regions(mask)] == ["center"]
    lone_speck = np.zeros((224, 224), np.uint8)
    lone_speck[200, 200] = 1
    assert [r.position for r in find_regions(lone_speck)] == ["bottom right"]


def test_empty_mask_and_bad_shape() -> None:
    assert find_regions(np.zeros((50, 50), np.uint8)) == []
    with pytest.raises(ShapeError, match=r"\(4, 4, 3\)"):
        find_regions(np.zeros((4, 4, 3), np.uint8))


def test_position_name_edges() -> None:
    assert position_name(0.0, 0.0) == "top left"
    assert position_name(1.0, 1.0) == "bottom right"
    assert position_name(0.34, 0.66) == "center"
