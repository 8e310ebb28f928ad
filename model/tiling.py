"""Tiling of large frames: overlapping square tiles at the camera's resolution, maps stitched back.

An 80 px scratch on a 4096 px frame is 4 px once the frame is squeezed into a 224 px model input:
gone. Tiling keeps the camera's resolution instead: the frame is cut into ``tile_px`` squares that
overlap by at least ``overlap`` of a tile, each tile is scored on its own (resized to the model's
input size when ``tile_px`` differs from it), and the tiles' maps are stitched back into one map
of the whole frame, averaged where tiles overlap. A frame no larger than ``tile_px`` on both
sides is one tile: the whole frame.

Pure numpy/torch, no I/O.

>>> grid = TileGrid.for_frame(1000, 1500, tile_px=448)
>>> grid.rows, grid.cols, grid.boxes[0], grid.boxes[-1]
(3, 4, (0, 0, 448, 448), (552, 1052, 448, 448))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from model.exceptions import ShapeError

__all__ = ["DEFAULT_OVERLAP", "TileGrid", "map_size", "stitch", "tiles_of"]

DEFAULT_OVERLAP = 0.125  # of a tile: a defect cut by one tile's edge sits well inside its neighbour


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one frame lie; ``boxes`` are (y, x, height, width) in frame pixels, row-major."""

    height: int
    width: int
    rows: int
    cols: int
    boxes: tuple[tuple[int, int, int, int], ...]

    @classmethod
    def for_frame(cls, height: int, width: int, tile_px: int | None, overlap: float = DEFAULT_OVERLAP) -> TileGrid:
        """The grid for a ``height`` x ``width`` frame; ``tile_px`` None (or >= both sides) means one tile."""
        if height < 1 or width < 1:
            raise ShapeError(f"frame must be at least 1x1 px, got {height}x{width}")
        if not 0.0 <= overlap < 0.9:
            raise ShapeError(f"tile overlap must be in [0, 0.9), got {overlap}")
        if tile_px is None or (height <= tile_px and width <= tile_px):
            return cls(height, width, 1, 1, ((0, 0, height, width),))
        if tile_px < 32:
            raise ShapeError(f"tile_px must be >= 32, got {tile_px}")
        ys = _starts(height, tile_px, overlap)
        xs = _starts(width, tile_px, overlap)
        th, tw = min(tile_px, height), min(tile_px, width)
        return cls(height, width, len(ys), len(xs), tuple((y, x, th, tw) for y in ys for x in xs))

    @property
    def count(self) -> int:
        """Number of tiles."""
        return len(self.boxes)

    def cut(self, frame: np.ndarray) -> list[np.ndarray]:
        """The tiles of ``frame`` (H, W, ...) as views, in ``boxes`` order."""
        if frame.shape[:2] != (self.height, self.width):
            raise ShapeError(f"grid is for {self.height}x{self.width} frames, got {frame.shape[0]}x{frame.shape[1]}")
        return [frame[y : y + h, x : x + w] for y, x, h, w in self.boxes]


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if length <= tile:
        return [0]
    step = tile * (1.0 - overlap)
    count = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def stitch(tile_maps: torch.Tensor, grid: TileGrid, out_height: int, out_width: int) -> torch.Tensor:
    """One (out_height, out_width) map from per-tile maps (T, S, S), each resized onto its box; overlaps averaged.

    The output may be smaller than the frame (maps are kept at a bounded resolution): boxes are
    scaled by out/frame.

    >>> grid = TileGrid.for_frame(64, 96, tile_px=64, overlap=0.0)
    >>> stitch(torch.ones(grid.count, 16, 16), grid, 32, 48).shape
    torch.Size([32, 48])
    """
    if tile_maps.ndim != 3 or tile_maps.shape[0] != grid.count:
        raise ShapeError(f"expected {grid.count} tile maps (T, S, S), got {tuple(tile_maps.shape)}")
    scale_y, scale_x = out_height / grid.height, out_width / grid.width
    total = torch.zeros(out_height, out_width, dtype=tile_maps.dtype, device=tile_maps.device)
    weight = torch.zeros_like(total)
    for tile_map, (y, x, h, w) in zip(tile_maps, grid.boxes, strict=True):
        y0, x0 = round(y * scale_y), round(x * scale_x)
        y1, x1 = max(y0 + 1, round((y + h) * scale_y)), max(x0 + 1, round((x + w) * scale_x))
        placed = F.interpolate(tile_map[None, None], size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
        total[y0:y1, x0:x1] += placed[0, 0]
        weight[y0:y1, x0:x1] += 1.0
    return total / weight.clamp_min(1.0)


def map_size(height: int, width: int, max_side_px: int) -> tuple[int, int]:
    """(h, w) of a frame's stored map: the frame's aspect ratio, longest side at most ``max_side_px``.

    >>> map_size(3000, 4000, 1024)
    (768, 1024)
    """
    scale = min(1.0, max_side_px / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def tiles_of(frames: Sequence[np.ndarray], tile_px: int | None, overlap: float = DEFAULT_OVERLAP):
    """Grids and the flat list of tiles of several frames: (grids, tiles, owner index per tile)."""
    grids, tiles, owners = [], [], []
    for index, frame in enumerate(frames):
        grid = TileGrid.for_frame(frame.shape[0], frame.shape[1], tile_px, overlap)
        grids.append(grid)
        tiles.extend(grid.cut(frame))
        owners.extend([index] * grid.count)
    return grids, tiles, owners
