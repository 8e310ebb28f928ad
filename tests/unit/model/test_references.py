"""model/references.py: robust cold-start threshold, promotion of the most normal frames, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.exceptions import BankBuildError
from model.references import choose_references, promote, robust_threshold
from training.synthetic import SyntheticLine, normal_images


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLiteEncoder:
    torch.set_num_threads(2)
    return EfficientNetLiteEncoder()


def test_robust_threshold_is_not_moved_by_a_minority_of_outliers() -> None:
    normal = [0.10, 0.11, 0.12, 0.10, 0.11, 0.12, 0.10, 0.11, 0.12]
    clean = robust_threshold(normal)
    assert 0.12 < clean < 0.2
    assert robust_threshold([*normal, 0.9]) == pytest.approx(clean, abs=0.02)  # 10 % outliers
    with pytest.raises(BankBuildError, match="finite"):
        robust_threshold([0.1, float("nan")])
    with pytest.raises(BankBuildError, match="0 in all"):
        robust_threshold([])


def test_promotion_leaves_the_defective_frame_out(encoder) -> None:
    frames = normal_images("washer", 9, seed=2)
    defective = SyntheticLine(("washer",), defect_rate=1.0, seed=5).next_frame()
    frames.insert(4, defective.image)  # 1 of 10 frames is defective
    promotion = promote(frames, "washer", 3, encoder, k=3, rotations=False)
    assert 4 not in promotion.chosen
    assert int(np.argmax(promotion.scores)) == 4  # it scores least normal of all
    assert promotion.scores[4] > promotion.threshold
    assert list(promotion.scores[list(promotion.chosen)]) == sorted(promotion.scores)[:3]
    assert (promotion.bank.product_class, promotion.bank.version, promotion.bank.shots) == ("washer", 3, 3)
    assert 0.0 < promotion.bank.calibration.threshold <= 1.0


def test_bad_requests_name_the_values(encoder) -> None:
    images = normal_images("washer", 5)
    with pytest.raises(BankBuildError, match="k=0"):
        choose_references(encoder, images, 0)
    with pytest.raises(BankBuildError, match="needs at least 6 frames, got 5"):
        choose_references(encoder, images, 3, product_class="washer")
    with pytest.raises(BankBuildError, match=r"frame 1 must be uint8 RGB"):
        choose_references(encoder, [images[0], images[1].astype(np.float32), *images[2:]], 1)
