"""training/prompt_maps.py: leave-out banks for the prompt learner's few-shot training maps (tiny 32 px CLIP)."""

from __future__ import annotations

import pytest
import torch

from linesight.errors import ConfigError
from tests.unit.model.test_clip import save_tiny_clip
from training.prompt_maps import FewShotPromptMaps, bank_subsets
from training.trainer import synthetic_training_images

SIZE_PX = 32

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from model.encoders.clip import ClipVisionEncoder

    return ClipVisionEncoder(save_tiny_clip(tmp_path_factory.mktemp("clip")), image_size_px=SIZE_PX)


@pytest.mark.parametrize(("count", "shots", "banks"), [(2, (1,), 2), (5, (1, 2, 4), 6), (16, (1, 2, 4), 4)])
def test_every_image_is_left_out_of_some_bank_and_sizes_follow_the_shots(count, shots, banks):
    subsets = bank_subsets(count, shots, banks, seed=3)
    assert len(subsets) == banks
    assert [len(s) for s in subsets] == [min(shots[j % len(shots)], count - 1) for j in range(banks)]
    assert all(len(set(s)) == len(s) for s in subsets)
    assert all(any(i not in s for s in subsets) for i in range(count))
    assert bank_subsets(count, shots, banks, seed=3) == subsets  # seeded


def test_bad_subsets_are_named():
    with pytest.raises(ConfigError, match=">= 2 normal images.*1"):
        bank_subsets(1, (1,), 2, seed=0)
    with pytest.raises(ConfigError, match="banks=1"):
        bank_subsets(4, (1,), 1, seed=0)


def test_banks_are_cached_by_content_and_maps_are_in_threshold_units(encoder, tmp_path):
    images = synthetic_training_images(["washer"], images_per_class=3, image_size_px=SIZE_PX)
    first = FewShotPromptMaps(encoder, images, shots=(1, 2), banks_per_class=2, cache_dir=tmp_path)
    assert (first.built, first.cached) == (2, 0)
    assert len(list(tmp_path.glob("washer-*.safetensors"))) == 2
    again = FewShotPromptMaps(encoder, images, shots=(1, 2), banks_per_class=2, cache_dir=tmp_path)
    assert (again.built, again.cached) == (0, 2)
    assert again.thresholds("washer") == first.thresholds("washer")
    other = synthetic_training_images(["washer"], images_per_class=3, image_size_px=SIZE_PX, seed=9)
    assert FewShotPromptMaps(encoder, other, shots=(1, 2), banks_per_class=2, cache_dir=tmp_path).built == 2

    features = encoder(encoder.preprocess(images["washer"])).patch_features
    bank = first.banks["washer"][0]
    maps = first(["washer"] * 3, [0, 0, 0], features)
    assert maps.shape == (3, SIZE_PX, SIZE_PX)
    from model.matching import tile_maps

    raw = tile_maps([features[i] for i in bank.stages], bank.patch_bank(), None, SIZE_PX)
    expected = (raw * 0.5 / bank.calibration.threshold).clamp(0, 1)
    assert torch.allclose(maps, expected, atol=1e-6)
    held = first.subsets["washer"][0][0]  # an image of bank 0 scores lowest against it: why pairs use other banks
    others = [i for i in range(3) if i != held]
    assert float(maps[held].max()) < min(float(maps[i].max()) for i in others)
