"""Cold start of a class with no bank: mutual scoring of its first frames, then promotion to a bank.

1. :func:`cold_start_scores`: the first N frames of the class are scored against each other
   (:mod:`model.mutual`); the cold-start decision is ``score > threshold`` with a threshold from the
   frames' own score distribution (:func:`robust_threshold`: median + 3 scaled MADs; most frames
   are normal, so the median and MAD describe the normal scores even with 10 % defects).
2. :func:`promote`: the K frames that scored most normal become the shots of a bank built and
   calibrated by :func:`model.fewshot.build_bank` (leave-one-out normal views and synthetic
   defects). The chosen frame indices and every frame's score are returned, so an operator can
   check (and veto) the references.

>>> from model.encoders.efficientnet import EfficientNetLiteEncoder
>>> from training.synthetic import normal_images
>>> promotion = promote(normal_images("washer", 6), "washer", 1, EfficientNetLiteEncoder(), k=2)
>>> len(promotion.chosen), promotion.bank.shots
(2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from model.bank import MemoryBank
from model.detector import Detector
from model.encoders.base import ImageEncoder
from model.exceptions import BankBuildError, ModelError
from model.fewshot import build_bank
from model.mutual import MutualConfig, mutual_scores
from model.mutual_window import MAD_TO_STD, ROBUST_Z
from model.mutual_window import robust_threshold as _robust_threshold
from model.tiling import TileGrid, map_size

__all__ = [
    "COLD_START_METHOD",
    "MAD_TO_STD",
    "ROBUST_Z",
    "ColdStartScores",
    "Promotion",
    "choose_references",
    "cold_start_scores",
    "promote",
    "robust_threshold",
]

COLD_START_METHOD = "mutual-median-plus-3-mad"  # how the cold-start threshold was set (stored with results)
MIN_PROMOTION_FRAMES = 4  # fewer frames cannot outvote a defect
TILED_MAP_MAX_PX = 512  # stitched cold-start maps of tiled frames: longest side (bounded memory for N frames)


@dataclass(frozen=True)
class ColdStartScores:
    """Mutual scores of the first frames of a class and the cold-start decisions."""

    scores: np.ndarray  # (N,) image score max(M) per frame
    maps: np.ndarray  # (N, S, S) float32 anomaly maps in [0, 1]
    threshold: float  # robust_threshold(scores)
    method: str = COLD_START_METHOD

    @property
    def decisions(self) -> np.ndarray:
        """(N,) bool: score > threshold."""
        return self.scores > self.threshold


@dataclass(frozen=True)
class Promotion:
    """A bank promoted from unlabeled frames and what it was made of."""

    bank: MemoryBank
    chosen: tuple[int, ...]  # indices into the frames given, most normal first
    scores: np.ndarray  # (N,) mutual image score of every frame given
    threshold: float  # the cold-start threshold of those scores


def robust_threshold(scores: Sequence[float] | np.ndarray, z: float = ROBUST_Z) -> float:
    """median + z * 1.4826 * MAD of ``scores`` (:func:`model.mutual_window.robust_threshold`, the stream's rule).

    >>> round(robust_threshold([0.1, 0.11, 0.12, 0.1, 0.9]), 4)
    0.1545
    """
    try:
        return _robust_threshold(scores, z)
    except ModelError as exc:
        raise BankBuildError(str(exc)) from None


def cold_start_scores(
    encoder: ImageEncoder, images: Sequence[np.ndarray], config: MutualConfig | None = None, *,
    tile_px: int | None = None,
) -> ColdStartScores:
    """Mutual scores of >= 2 uint8 RGB frames of one class.

    ``tile_px`` None: whole frames at the model input size. A number of frame pixels: frames larger
    than it are tiled as the banks tile them (all frames resized to the first one's size), tile
    (r, c) of each frame scored against tile (r, c) of the others, one tile position at a time (so
    memory holds one position's features); the maps are stitched at most TILED_MAP_MAX_PX per side.
    """
    frames = list(images)
    for index, image in enumerate(frames):
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            shape = getattr(image, "shape", None)
            raise BankBuildError(f"frame {index} must be uint8 RGB (H, W, 3), got {getattr(image, 'dtype', type(image))} {shape}")
    if len(frames) < 2:
        raise BankBuildError(f"cold start compares frames with each other: needs at least 2 frames, got {len(frames)}")
    grid = TileGrid.for_frame(frames[0].shape[0], frames[0].shape[1], tile_px)
    if grid.count > 1:
        maps = _tiled_maps(Detector(encoder), frames, grid, config)
    else:
        features = Detector(encoder).encode_tiles(frames)  # per stage (N, C_i, h_i, w_i)
        maps = mutual_scores(features, encoder.image_size_px, config).maps
    scores = maps.flatten(1).amax(dim=1).cpu().numpy().astype(np.float64)
    return ColdStartScores(scores, maps.cpu().numpy(), robust_threshold(scores))


def _tiled_maps(detector: Detector, frames: list[np.ndarray], grid: TileGrid, config: MutualConfig | None):
    """(N, h, w) stitched mutual maps of tiled frames, one tile position at a time (overlaps averaged)."""
    size = (grid.height, grid.width)
    frames = [f if f.shape[:2] == size else cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in frames]
    height, width = map_size(grid.height, grid.width, TILED_MAP_MAX_PX)
    total = torch.zeros(len(frames), height, width)
    weight = torch.zeros(height, width)
    scale_y, scale_x = height / grid.height, width / grid.width
    for y, x, h, w in grid.boxes:
        features = detector.encode_tiles([f[y : y + h, x : x + w] for f in frames])  # this position, all frames
        maps = mutual_scores(features, detector.encoder.image_size_px, config).maps.cpu()  # (N, S, S)
        y0, x0 = round(y * scale_y), round(x * scale_x)
        y1, x1 = max(y0 + 1, round((y + h) * scale_y)), max(x0 + 1, round((x + w) * scale_x))
        total[:, y0:y1, x0:x1] += F.interpolate(maps[:, None], size=(y1 - y0, x1 - x0), mode="bilinear",
                                                align_corners=False)[:, 0]
        weight[y0:y1, x0:x1] += 1.0
    return total / weight.clamp_min(1.0)


def promote(
    frames: Sequence[np.ndarray],
    product_class: str,
    version: int,
    encoder: ImageEncoder,
    k: int = 4,
    *,
    config: MutualConfig | None = None,
    rotations: bool = True,
    seed: int = 0,
    tile_px: int | None = None,
) -> Promotion:
    """Bank version ``version`` of ``product_class`` from the ``k`` most normal of ``frames`` (unlabeled).

    Needs at least max(4, 2k) frames: the chosen half is drawn from the frames scoring below the
    median, so up to 10 % (indeed up to half) of defective frames can be outvoted.
    """
    frames = list(frames)
    chosen, scored = choose_references(encoder, frames, k, config=config, product_class=product_class, tile_px=tile_px)
    bank = build_bank(encoder, [frames[i] for i in chosen], product_class, version, rotations=rotations, seed=seed,
                      tile_px=tile_px)
    return Promotion(bank, chosen, scored.scores, scored.threshold)


def choose_references(
    encoder: ImageEncoder, frames: Sequence[np.ndarray], k: int, *, config: MutualConfig | None = None,
    product_class: str = "?", tile_px: int | None = None,
) -> tuple[tuple[int, ...], ColdStartScores]:
    """The indices of the ``k`` frames with the lowest mutual scores (most normal first) and all scores.

    Needs at least max(4, 2k) frames, so that the chosen frames all score below the median.
    """
    frames = list(frames)
    if k < 1:
        raise BankBuildError(f"promotion needs k >= 1 reference frames, got k={k}")
    needed = max(MIN_PROMOTION_FRAMES, 2 * k)
    if len(frames) < needed:
        raise BankBuildError(
            f"class {product_class!r}: promoting {k} references needs at least {needed} frames, got {len(frames)}"
        )
    scored = cold_start_scores(encoder, frames, config, tile_px=tile_px)
    order = np.argsort(scored.scores, kind="stable")  # most normal first
    return tuple(int(i) for i in order[:k]), scored
