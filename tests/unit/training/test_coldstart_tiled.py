"""Cold start on large frames (model/references.py with tile_px, training/coldstart_realistic.py): frames are
tiled as the banks tile them, and a subtle defect on a realistic exposure scores highest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.references import TILED_MAP_MAX_PX, choose_references, cold_start_scores
from training.coldstart_realistic import CachedDetector, first_frames, later_frames, normal_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLiteEncoder:
    return EfficientNetLiteEncoder()


def test_tiled_cold_start_finds_the_bold_defects_and_never_picks_them(encoder):
    images, labels = first_frames("retina", 8, 0.25, seed=1, megapixels=0.2)  # 447 x 447: 9 tiles of 224 px
    assert sum(labels) == 2
    scored = cold_start_scores(encoder, images, tile_px=224)
    assert scored.maps.shape == (8, *(min(TILED_MAP_MAX_PX, s) for s in images[0].shape[:2]))
    assert np.allclose(scored.scores, scored.maps.reshape(8, -1).max(axis=1))
    chosen, _ = choose_references(encoder, images, 2, tile_px=224)
    assert not any(labels[i] for i in chosen)
    whole = cold_start_scores(encoder, images)  # squeezed to 224 px: one tile
    assert whole.maps.shape == (8, 224, 224)


def test_the_realistic_streams_are_deterministic_and_the_cached_detector_encodes_once(encoder):
    first, labels = first_frames("coffee", 10, 0.1, seed=0, megapixels=0.05)
    again, _ = first_frames("coffee", 10, 0.1, seed=0, megapixels=0.05)
    assert sum(labels) == 1
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    later, later_labels = later_frames("coffee", 2, 3, megapixels=0.05)
    assert later_labels == [0, 0, 1, 1, 1]
    assert len(normal_frames("coffee", 3, megapixels=0.05)) == 3
    detector = CachedDetector(encoder, max_tiles=64)
    tiles = [np.ascontiguousarray(image[:64, :64]) for image in later]
    fresh = detector.encode_tiles(tiles)
    calls = []
    hook = detector.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        cached = detector.encode_tiles([tiles[3], tiles[0]])
    finally:
        hook.remove()
    assert calls == []  # both tiles came from the cache
    for stage_fresh, stage_cached in zip(fresh, cached, strict=True):
        assert torch.equal(stage_cached, stage_fresh[[3, 0]])
