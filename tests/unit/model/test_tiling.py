"""Tile grids cover the frame with the promised overlap; stitched maps land where their tiles were."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.exceptions import ShapeError
from model.tiling import TileGrid, map_size, stitch, tiles_of


@pytest.mark.parametrize(("height", "width", "tile"), [(1000, 1500, 448), (4096, 4096, 224), (448, 4096, 224), (300, 300, 224)])
def test_the_grid_covers_every_pixel_with_the_overlap(height, width, tile):
    grid = TileGrid.for_frame(height, width, tile, overlap=0.125)
    covered = np.zeros((height, width), np.int32)
    for y, x, h, w in grid.boxes:
        assert h == min(tile, height)
        assert w == min(tile, width)
        assert 0 <= y
        assert y + h <= height
        assert 0 <= x
        assert x + w <= width
        covered[y : y + h, x : x + w] += 1
    assert covered.min() >= 1
    xs = sorted({x for _, x, _, _ in grid.boxes})
    assert all(b - a <= tile * (1 - 0.125) + 1 for a, b in zip(xs, xs[1:], strict=False))  # neighbours overlap
    assert grid.count == grid.rows * grid.cols


def test_a_frame_no_larger_than_a_tile_is_one_tile():
    assert TileGrid.for_frame(224, 224, 224).count == 1
    assert TileGrid.for_frame(1000, 800, None).boxes == ((0, 0, 1000, 800),)


def test_bad_grids_name_the_value():
    with pytest.raises(ShapeError, match="overlap"):
        TileGrid.for_frame(100, 100, 64, overlap=0.95)
    with pytest.raises(ShapeError, match="tile_px"):
        TileGrid.for_frame(1000, 1000, 16)
    with pytest.raises(ShapeError, match="1x1"):
        TileGrid.for_frame(0, 10, 64)


def test_stitch_puts_each_tile_map_on_its_box():
    grid = TileGrid.for_frame(64, 128, 64, overlap=0.0)  # two tiles side by side
    maps = torch.stack([torch.zeros(16, 16), torch.ones(16, 16)])
    out = stitch(maps, grid, 32, 64)
    assert out.shape == (32, 64)
    assert float(out[:, :30].max()) == 0.0
    assert float(out[:, 34:].min()) == 1.0


def test_overlaps_are_averaged_and_a_constant_stays_constant():
    grid = TileGrid.for_frame(500, 700, 224)
    out = stitch(torch.full((grid.count, 32, 32), 0.25), grid, 250, 350)
    assert torch.allclose(out, torch.full_like(out, 0.25))


def test_map_size_keeps_the_aspect_ratio_and_the_cut_keeps_the_pixels():
    assert map_size(3000, 4000, 1024) == (768, 1024)
    assert map_size(100, 80, 1024) == (100, 80)
    frame = np.arange(300 * 500 * 3, dtype=np.uint32).reshape(300, 500, 3)
    grids, tiles, owners = tiles_of([frame, frame[:100, :100]], 224)
    assert owners == [0] * grids[0].count + [1]
    y, x, h, w = grids[0].boxes[-1]
    assert np.array_equal(tiles[grids[0].count - 1], frame[y : y + h, x : x + w])
