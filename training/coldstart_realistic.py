"""Cold start on the realistic benchmark's frames (training/realistic.py): streams of ~1.2 MP exposures.

What :mod:`training.coldstart_eval` needs beyond the synthetic line: the first N frames of a class
as a camera would send them (exposures of the class's photograph, an exact share of them with one
subtle defect each, at random positions), later frames to compare the banks on (10 good + 10
defective, as ``linesight eval --realistic``), k known-normal exposures for the labelled banks,
and a detector that encodes each tile once however many banks score it (the encoder dominates the
cost of tiled frames).

>>> images, labels = first_frames("retina", 10, 0.1, seed=0, megapixels=0.05)
>>> len(images), sum(labels), images[0].dtype
(10, 1, dtype('uint8'))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from model.detector import Detector
from training.realistic import (
    CLASSES,
    DEFAULT_MEGAPIXELS,
    defective_frame,
    exposure,
    jpeg_round_trip,
    source_photo,
)

__all__ = ["CachedDetector", "first_frames", "later_frames", "normal_frames"]


@lru_cache(maxsize=2)
def _photo(product_class: str, megapixels: float) -> np.ndarray:
    return source_photo(product_class, megapixels)


def _rng(product_class: str, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, CLASSES.index(product_class), stream])


def first_frames(
    product_class: str, count: int, defect_rate: float, *, seed: int = 0, megapixels: float = DEFAULT_MEGAPIXELS
) -> tuple[list[np.ndarray], list[int]]:
    """The class's first ``count`` frames, ``round(defect_rate * count)`` (at least 1) of them defective."""
    rng = _rng(product_class, seed, int(round(defect_rate * 1000)))
    bad = set(rng.choice(count, max(1, int(round(defect_rate * count))), replace=False).tolist())
    photo = _photo(product_class, megapixels)
    images = [jpeg_round_trip(defective_frame(exposure(photo, rng, jpeg=False), rng)[0]) if i in bad
              else exposure(photo, rng) for i in range(count)]
    return images, [int(i in bad) for i in range(count)]


def later_frames(
    product_class: str, good: int = 10, defective: int = 10, *, seed: int = 0, megapixels: float = DEFAULT_MEGAPIXELS
) -> tuple[list[np.ndarray], list[int]]:
    """Frames the banks are compared on: ``good`` normal then ``defective`` defective exposures."""
    rng = _rng(product_class, seed, 10_001)
    photo = _photo(product_class, megapixels)
    images = [exposure(photo, rng) for _ in range(good)]
    images += [jpeg_round_trip(defective_frame(exposure(photo, rng, jpeg=False), rng)[0]) for _ in range(defective)]
    return images, [0] * good + [1] * defective


def normal_frames(product_class: str, count: int, *, seed: int = 0, megapixels: float = DEFAULT_MEGAPIXELS):
    """``count`` known-normal exposures (the labelled shots)."""
    rng = _rng(product_class, seed, 10_002)
    photo = _photo(product_class, megapixels)
    return [exposure(photo, rng) for _ in range(count)]


class CachedDetector(Detector):
    """A :class:`Detector` that encodes each distinct tile once (keyed by its bytes): several banks can
    score the same later frames at the cost of one encoding."""

    def __init__(self, encoder, max_tiles: int = 4096) -> None:
        super().__init__(encoder)
        self._cache: dict[bytes, list[torch.Tensor]] = {}
        self._max_tiles = max_tiles

    def encode_tiles(self, tiles: Sequence[np.ndarray]) -> list[torch.Tensor]:
        keys = [hashlib.blake2b(np.ascontiguousarray(t).tobytes(), digest_size=16).digest() for t in tiles]
        if len(self._cache) + len(tiles) > self._max_tiles:
            self._cache.clear()  # bounded memory: start over (everything of this call is encoded afresh)
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        if missing:
            fresh = super().encode_tiles([tiles[i] for i in missing])
            for row, i in enumerate(missing):
                self._cache[keys[i]] = [f[row] for f in fresh]
            if len(missing) == len(tiles):
                return fresh
        return [torch.stack([self._cache[key][stage] for key in keys]) for stage in range(len(self._cache[keys[0]]))]
