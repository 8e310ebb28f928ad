"""NSA anomaly simulation: determinism, mask rule, patch count probability, donor images, CLI grid."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from linesight.errors import ConfigError
from training.nsa import AnomalySimulator, PatchBounds, change_mask, patch_bounds_for


def _textured(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def images() -> list[np.ndarray]:
    return [_textured(i) for i in range(4)]


@pytest.mark.parametrize("method", ["nsa", "cutpaste", "scratch", "stain"])
def test_same_seed_gives_identical_samples_and_another_seed_differs(images, method):
    first, second = (AnomalySimulator(images, method=method, seed=7) for _ in range(2))
    a = [first.sample(1) for _ in range(3)]
    b = [second.sample(1) for _ in range(3)]
    for (image_a, mask_a), (image_b, mask_b) in zip(a, b, strict=True):
        assert np.array_equal(image_a, image_b)
        assert np.array_equal(mask_a, mask_b)
    other = AnomalySimulator(images, method=method, seed=8).sample(1)
    assert not np.array_equal(a[0][1], other[1])


def test_sample_returns_uint8_rgb_and_binary_mask_covering_the_change(images):
    image, mask = AnomalySimulator(images, seed=0).sample(0)
    assert image.shape == images[0].shape
    assert image.dtype == np.uint8
    assert mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    assert mask.any()
    changed = np.abs(image.astype(int) - images[0].astype(int)).max(axis=2) > 40
    assert (changed & (mask == 0)).sum() < 0.1 * changed.sum()  # strong changes lie inside the mask


def test_change_mask_binarises_the_normalised_difference_at_0_3():
    before = np.zeros((40, 40, 3), np.uint8)
    after = before.copy()
    after[5:15, 5:15] = 200  # the peak change: normalised 1.0
    after[25:35, 25:35] = 40  # 40 / 200 = 0.2 of the peak: below 0.3
    after[5:15, 25:35] = 100  # 0.5 of the peak: above 0.3
    mask = change_mask(before, after, np.ones((40, 40), np.uint8))
    assert mask[10, 10] == 1
    assert mask[10, 30] == 1
    assert mask[30, 30] == 0
    assert change_mask(before, after, np.ones((40, 40), np.uint8), threshold=0.1)[30, 30] == 1


def test_change_mask_stays_inside_the_footprint_and_ignores_invisible_changes():
    before = np.zeros((20, 20, 3), np.uint8)
    after = np.full((20, 20, 3), 255, np.uint8)
    footprint = np.zeros((20, 20), np.uint8)
    footprint[2:6, 2:6] = 1
    mask = change_mask(before, after, footprint)
    assert mask.sum() == footprint.sum()
    faint = before.copy()
    faint[:] = 10  # max diff 10/255 < min_contrast 0.1
    assert not change_mask(before, faint, np.ones((20, 20), np.uint8)).any()


def test_second_patch_has_probability_one_half(images):
    sim = AnomalySimulator(images, method="cutpaste", seed=3)
    counts = [len(sim.sample_detailed().patches) for _ in range(600)]
    share_two = counts.count(2) / len(counts)
    assert set(counts) == {1, 2}
    assert 0.42 < share_two < 0.58  # binomial(600, 0.5): 4 standard deviations is +-0.08
    assert {len(AnomalySimulator(images, second_patch_p=0.0, seed=1).sample_detailed().patches) for _ in range(5)} == {1}
    always = AnomalySimulator(images, method="cutpaste", second_patch_p=1.0, seed=1)
    assert {len(always.sample_detailed().patches) for _ in range(20)} == {2}


def test_patches_come_from_a_different_image():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    flat = [np.full((48, 48, 3), c, np.uint8) for c in colours]
    sim = AnomalySimulator(flat, method="cutpaste", second_patch_p=1.0, seed=5)
    for target in (0, 1, 2) * 10:
        result = sim.sample_detailed(target)
        for patch in result.patches:
            assert patch.donor_index != target
            x, y, w, h = patch.target_box_px
            pasted = result.image[y + h // 2, x + w // 2]
            assert tuple(pasted) != colours[target]  # the pasted pixels are not the target's own colour


def test_nsa_poisson_blend_lands_in_the_target_box(images):
    result = AnomalySimulator(images, second_patch_p=0.0, seed=11).sample_detailed(2)
    (patch,) = result.patches
    x, y, w, h = patch.target_box_px
    inside = np.zeros(result.mask.shape, bool)
    inside[y : y + h, x : x + w] = True
    assert result.mask.any()
    assert not (result.mask.astype(bool) & ~inside).any()


def test_mixed_clone_and_scratch_stain_variants_produce_masks(images):
    for kwargs in ({"clone_mode": "mixed"}, {"method": "scratch"}, {"method": "stain"}):
        _, mask = AnomalySimulator(images, seed=2, **kwargs).sample()
        assert mask.any(), kwargs


def test_patch_bounds_are_small_for_screws_and_large_for_textures():
    assert patch_bounds_for("screw").max_frac < patch_bounds_for("carpet").max_frac
    assert patch_bounds_for("unknown-part") == PatchBounds()
    with pytest.raises(ConfigError, match="0.5"):
        PatchBounds(0.5, 0.2)


def test_bad_inputs_name_the_problem(images):
    with pytest.raises(ConfigError, match="different image"):
        AnomalySimulator(images[:1])
    with pytest.raises(ConfigError, match="'poisson'"):
        AnomalySimulator(images, method="poisson")
    with pytest.raises(ConfigError, match="normal image 1"):
        AnomalySimulator([images[0], images[1][:, :, 0]])
    with pytest.raises(ConfigError, match="target_index 9"):
        AnomalySimulator(images).sample(9)


def test_simulate_command_writes_a_grid(tmp_path, images):
    from linesight.cli import main

    folder = tmp_path / "tile"
    folder.mkdir()
    for index, image in enumerate(images):
        cv2.imwrite(str(folder / f"{index}.png"), image[:, :, ::-1])
    out = tmp_path / "grid.png"
    assert main(["simulate", "--class-dir", str(folder), "--out", str(out), "--count", "3", "--seed", "1"]) == 0
    grid = cv2.imread(str(out))
    assert grid is not None
    assert grid.shape[0] > 224
    assert grid.shape[1] > 2 * 224
    assert main(["simulate", "--class-dir", str(folder), "--out", str(tmp_path / "grid.jpg")]) == 2
