"""The realistic benchmark: real packaged photographs, camera exposures, subtle defects with masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from training.exceptions import DatasetError
from training.realistic import export_realistic_dataset, exposure, source_photo


def test_the_export_writes_the_mvtec_layout_with_a_mask_per_defect(tmp_path: Path):
    root = export_realistic_dataset(tmp_path, ("brick",), n_train=2, n_test_good=1, n_test_defective=2, megapixels=0.05)
    assert len(list((root / "brick" / "train" / "good").glob("*.png"))) == 2
    for image in sorted((root / "brick" / "test" / "defect").glob("*.png")):
        mask = cv2.imread(str(root / "brick" / "ground_truth" / "defect" / f"{image.stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == cv2.imread(str(image)).shape[:2]
        assert 0 < (mask > 0).mean() < 0.2  # subtle: a small share of the frame


def test_bent_parts_differ_by_about_the_asked_pixels_and_get_their_own_export(tmp_path: Path):
    photo = source_photo("brick", 0.1)
    still = [exposure(photo, np.random.default_rng(1), jpeg=False) for _ in range(2)]
    bent = exposure(photo, np.random.default_rng(1), jpeg=False, part_variation_px=4.0)
    assert np.array_equal(still[0], still[1])  # the same draw: only the bend differs below
    difference = np.abs(bent.astype(np.int16) - still[0].astype(np.int16)).mean()
    assert difference > 5.0
    plain = export_realistic_dataset(tmp_path, ("brick",), n_train=1, n_test_good=1, n_test_defective=1, megapixels=0.05)
    first = cv2.imread(str(plain / "brick" / "train" / "good" / "000.png"))
    export_realistic_dataset(tmp_path, ("brick",), n_train=1, n_test_good=1, n_test_defective=1, megapixels=0.05,
                             part_variation_px=4.0)
    assert not np.array_equal(first, cv2.imread(str(plain / "brick" / "train" / "good" / "000.png")))  # rewritten


def test_bad_benchmark_settings_name_the_value(tmp_path: Path):
    with pytest.raises(DatasetError, match="part_variation_px must be in \\[0, 50\\] px, got -1"):
        export_realistic_dataset(tmp_path, ("brick",), part_variation_px=-1)
    with pytest.raises(DatasetError, match="unknown realistic class 'wood'"):
        export_realistic_dataset(tmp_path, ("wood",))
