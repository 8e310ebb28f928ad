"""Patch matching against a memory bank, per tile: the few-shot map of tiled and untiled frames.

A bank's rows may carry the index of the tile they came from (a tiled bank: the frames of a fixed
camera are aligned, so tile (r, c) of a test frame is compared with tiles (r +- 1, c +- 1) of the
references only). That positional prior is what lets subtle, small defects stand out, and it
keeps the search small: a 4096 px frame cut into 400 tiles compares each tile with 9 tiles of
each shot, not with all 400. An untiled bank (tile ids None) is searched whole, as before.

Per tile and selected stage i: sim_i = max over the candidate rows of cosine(F_patch_i, B_i);
M_tile = upsample(1 - mean_i sim_i) to the model input size S, Gaussian-smoothed.

>>> bank = PatchBank((torch.nn.functional.normalize(torch.randn(32, 8), dim=1),), None, None)
>>> tile_maps([torch.randn(2, 8, 4, 4)], bank, None, 16).shape
torch.Size([2, 16, 16])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from model.anomaly_map import mean_map, nearest_similarity, patch_embeddings
from model.exceptions import ShapeError

__all__ = ["NEIGHBOUR_RADIUS", "PatchBank", "tile_maps"]

NEIGHBOUR_RADIUS = 1  # tiles: a test tile is matched against reference tiles up to 1 step away


@dataclass
class PatchBank:
    """Rows to match: per stage (N_i, C_i) unit rows, with each row's tile index (N_i,) when tiled.

    ``grid`` is (rows, cols) of the tile grid the tile indices refer to (None when untiled).
    """

    rows: tuple[torch.Tensor, ...]
    tiles: tuple[torch.Tensor, ...] | None
    grid: tuple[int, int] | None
    _candidates: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)

    def candidates(self, stage: int, tile: int) -> torch.Tensor:
        """The rows of ``stage`` a test tile ``tile`` is compared with (all rows when untiled)."""
        if self.tiles is None or self.grid is None:
            return self.rows[stage]
        key = (stage, tile)
        found = self._candidates.get(key)
        if found is None:
            rows, cols = self.grid
            r0, c0 = divmod(tile, cols)
            near = [
                r * cols + c
                for r in range(max(0, r0 - NEIGHBOUR_RADIUS), min(rows, r0 + NEIGHBOUR_RADIUS + 1))
                for c in range(max(0, c0 - NEIGHBOUR_RADIUS), min(cols, c0 + NEIGHBOUR_RADIUS + 1))
            ]
            ids = self.tiles[stage]
            selected = torch.isin(ids, torch.tensor(near, dtype=ids.dtype, device=ids.device))
            found = self.rows[stage][selected]
            if found.shape[0] == 0:  # no reference tile nearby (should not happen): fall back to all rows
                found = self.rows[stage]
            self._candidates[key] = found
        return found


def tile_maps(
    stage_features: Sequence[torch.Tensor],
    bank: PatchBank,
    tile_index: Sequence[int] | None,
    size_px: int,
    *,
    blur_sigma_px: float | None = None,
) -> torch.Tensor:
    """M per tile (T, S, S) in [0, 1] from raw features per stage (T, C_i, h_i, w_i).

    ``tile_index[t]`` is the grid position of tile t in its frame (needed for a tiled bank).
    """
    if len(stage_features) != len(bank.rows):
        raise ShapeError(f"got {len(stage_features)} stages of features but the bank has {len(bank.rows)}")
    if bank.tiles is not None and tile_index is None:
        raise ShapeError("a tiled bank needs the tile index of every test tile")
    count = stage_features[0].shape[0]
    grids = []
    for stage, (features, embedding) in enumerate(zip(stage_features, patch_embeddings(stage_features), strict=True)):
        if features.shape[1] != bank.rows[stage].shape[1]:
            raise ShapeError(
                f"stage {stage}: features have {features.shape[1]} channels, the bank has {bank.rows[stage].shape[1]}"
            )
        if bank.tiles is None:
            sim = nearest_similarity(embedding, bank.rows[stage].to(embedding.dtype))  # (T, P)
        else:
            sim = torch.stack([
                nearest_similarity(embedding[t : t + 1], bank.candidates(stage, int(tile_index[t])).to(embedding.dtype))[0]
                for t in range(count)
            ])
        grids.append(1.0 - sim.view(count, *features.shape[-2:]))  # 1 - sim_i
    return mean_map(grids, size_px, blur_sigma_px)  # M = 1 - mean_i sim_i, smoothed
