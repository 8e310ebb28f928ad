"""Seeded defect injection: masks, determinism, visible changes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from model.defects import DEFECT_KINDS, inject_defect, random_defect
from model.exceptions import DefectError
from training.synthetic import normal_images


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return normal_images("gravel", 1)[0]


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_kind_changes_the_masked_pixels(image: np.ndarray, kind: str) -> None:
    before = image.copy()
    out, mask = inject_defect(image, kind, np.random.default_rng(1), source=normal_images("washer", 1)[0])
    assert np.array_equal(image, before)  # input untouched
    assert out.shape == image.shape
    assert out.dtype == np.uint8
    assert mask.shape == image.shape[:2]
    assert mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    assert 10 < mask.sum() < 0.1 * mask.size
    change = np.abs(out.astype(int) - image.astype(int)).sum(axis=2)
    assert change[mask > 0].mean() > 25
    assert change[mask > 0].mean() > 5 * change[mask == 0].mean()


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_seeded(image: np.ndarray, kind: str) -> None:
    a = inject_defect(image, kind, np.random.default_rng(5))
    b = inject_defect(image, kind, np.random.default_rng(5))
    c = inject_defect(image, kind, np.random.default_rng(6))
    assert np.array_equal(a[0], b[0])
    assert np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_where_limits_the_defect_centre(image: np.ndarray) -> None:
    where = np.zeros(image.shape[:2], bool)
    where[150:200, 20:70] = True
    for seed in range(5):
        _, mask = inject_defect(image, "hole", np.random.default_rng(seed), where=where)
        rows, cols = np.nonzero(mask)
        assert 150 <= rows.mean() < 200
        assert 20 <= cols.mean() < 70


def test_random_defect_reports_its_kind(image: np.ndarray) -> None:
    kinds = {random_defect(image, np.random.default_rng(s))[2] for s in range(30)}
    assert kinds == set(DEFECT_KINDS)
    assert random_defect(image, np.random.default_rng(0), kinds=("stain",))[2] == "stain"


def test_errors_name_the_value(image: np.ndarray) -> None:
    with pytest.raises(DefectError, match="'crack'"):
        inject_defect(image, "crack", np.random.default_rng(0))
    with pytest.raises(DefectError, match="float32"):
        inject_defect(image.astype(np.float32), "hole", np.random.default_rng(0))
    with pytest.raises(DefectError, match="at least one"):
        random_defect(image, np.random.default_rng(0), kinds=())
