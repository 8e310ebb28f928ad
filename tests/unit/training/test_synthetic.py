"""The synthetic production line: classes, determinism by seed, defects with masks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from training.exceptions import UnknownProductClassError
from training.synthetic import PRODUCT_CLASSES, SyntheticLine, normal_images, rotations_ok, synthetic_frames


def test_classes() -> None:
    assert len(PRODUCT_CLASSES) >= 3
    assert {"washer", "bracket"} <= set(PRODUCT_CLASSES)
    assert rotations_ok("grass")
    assert not rotations_ok("bracket")


def test_line_is_deterministic_by_seed() -> None:
    first_line, second_line = SyntheticLine(seed=4), SyntheticLine(seed=4)
    first = [first_line.next_frame() for _ in range(10)]
    again = [second_line.next_frame() for _ in range(10)]
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.mask, b.mask)
        assert (a.product_class, a.is_defective, a.defect_kind) == (b.product_class, b.is_defective, b.defect_kind)
    other = SyntheticLine(seed=5).next_frame()
    assert not np.array_equal(other.image, first[0].image)


@pytest.mark.parametrize("product_class", PRODUCT_CLASSES)
def test_frames_of_every_class(product_class: str) -> None:
    line = SyntheticLine(product_classes=(product_class,), defect_rate=0.5, seed=1, image_size_px=128)
    frames = [line.next_frame() for _ in range(8)]
    assert all(f.product_class == product_class for f in frames)
    assert all(f.image.shape == (128, 128, 3) and f.image.dtype == np.uint8 for f in frames)
    for frame in frames:
        assert frame.mask.shape == (128, 128)
        assert frame.mask.dtype == np.uint8
        assert bool(frame.mask.any()) == frame.is_defective == (frame.defect_kind is not None)
    normals = [f.image for f in frames if not f.is_defective]
    assert len(normals) >= 2
    assert not np.array_equal(normals[0], normals[1])


def test_defect_rate_bounds_and_mix() -> None:
    assert not any(SyntheticLine(defect_rate=0.0, seed=0).next_frame().is_defective for _ in range(10))
    line = SyntheticLine(defect_rate=1.0, seed=0)
    frames = [line.next_frame() for _ in range(25)]
    assert all(f.is_defective for f in frames)
    assert len({f.product_class for f in frames}) == len(PRODUCT_CLASSES)


def test_normal_images_are_seeded_and_separate_from_the_line() -> None:
    a, b = normal_images("brick", 3, seed=2), normal_images("brick", 3, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], normal_images("brick", 1, seed=3)[0])
    line_frame = SyntheticLine(product_classes=("brick",), defect_rate=0.0, seed=2).next_frame()
    assert not any(np.array_equal(line_frame.image, x) for x in a)


def test_unknown_class() -> None:
    with pytest.raises(UnknownProductClassError, match="'screw'"):
        normal_images("screw", 1)
    with pytest.raises(UnknownProductClassError, match="'screw'"):
        SyntheticLine(product_classes=("screw",))
    with pytest.raises(UnknownProductClassError, match="'screw'"):
        SyntheticLine().next_frame("screw")


def test_synthetic_frames_carry_ground_truth():
    frames = list(itertools.islice(
        synthetic_frames("line-1", "cam-1", product_classes=("gravel",), defect_rate=1.0, image_size_px=64), 2
    ))
    for line_id, camera_id, product_class, image, extra in frames:
        assert (line_id, camera_id, product_class) == ("line-1", "cam-1", "gravel")
        assert image.shape == (64, 64, 3)
        assert image.dtype == np.uint8
        assert extra["is_defective"] is True
        assert extra["defect_kind"]
