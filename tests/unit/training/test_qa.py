"""Question/answer pairs from known masks (docs/method.md templates, 3x3 positions, counts)."""

from __future__ import annotations

import numpy as np
import pytest

from linesight.errors import ConfigError
from model.anomalygpt import default_description
from training.qa import QUESTION, answer_for_mask, mask_positions, qa_pair, training_pairs


def _mask(*boxes: tuple[int, int, int, int], size: int = 90) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for top, left, height, width in boxes:
        mask[top : top + height, left : left + width] = 1
    return mask


def test_empty_mask_answers_no():
    assert answer_for_mask(_mask()) == "No, there is no anomaly in the image."


@pytest.mark.parametrize(
    ("box", "position"),
    [
        ((5, 5, 10, 10), "top left"),
        ((5, 40, 10, 10), "top"),
        ((5, 75, 10, 10), "top right"),
        ((40, 5, 10, 10), "left"),
        ((40, 40, 10, 10), "center"),
        ((40, 75, 10, 10), "right"),
        ((75, 5, 10, 10), "bottom left"),
        ((75, 40, 10, 10), "bottom"),
        ((75, 75, 10, 10), "bottom right"),
    ],
)
def test_one_region_answers_its_3x3_position(box, position):
    assert answer_for_mask(_mask(box)) == f"Yes, there is an anomaly in the image, at the {position} of the image."


def test_position_is_the_centre_of_the_region_not_its_corner():
    # a wide region starting in the left third whose centre lies in the middle third
    assert mask_positions(_mask((40, 20, 10, 50))) == ("center",)


def test_two_regions_answer_count_and_positions_largest_first():
    mask = _mask((70, 70, 8, 8), (5, 5, 20, 20))
    assert answer_for_mask(mask) == (
        "Yes, there are 2 anomalies in the image, they are at the top left and bottom right of the image."
    )


def test_three_regions_and_specks_below_the_minimum_are_dropped():
    mask = _mask((5, 5, 20, 20), (40, 40, 15, 15), (75, 75, 12, 12), (60, 10, 1, 1))
    pair = qa_pair(mask)
    assert pair.region_count == 3
    assert pair.positions == ("top left", "center", "bottom right")
    assert pair.answer.startswith("Yes, there are 3 anomalies in the image, they are at the top left, center and")


def test_question_carries_the_class_description():
    pair = qa_pair(_mask(), product_class="metal_nut")
    assert pair.question == f"{default_description('metal_nut')} {QUESTION}"
    assert "metal nut" in pair.question
    assert qa_pair(_mask(), with_description=False).question == QUESTION


def test_training_pairs_put_the_normal_image_with_a_zero_mask_and_no_first():
    normal = np.zeros((90, 90, 3), np.uint8)
    anomaly = normal + 50
    (img0, mask0, qa0), (img1, mask1, qa1) = training_pairs(normal, anomaly, _mask((40, 75, 10, 10)) * 255)
    assert img0 is normal
    assert not mask0.any()
    assert qa0.answer.startswith("No")
    assert img1 is anomaly
    assert set(np.unique(mask1)) == {0, 1}
    assert qa1.positions == ("right",)


def test_mask_of_wrong_shape_is_rejected():
    with pytest.raises(ConfigError, match=r"\(4, 4, 3\)"):
        qa_pair(np.zeros((4, 4, 3), np.uint8))
