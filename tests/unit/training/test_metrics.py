"""Metrics against scikit-learn, hand-computed AUPRO cases and a brute-force PRO curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from training.metrics import MetricError, accuracy, aupro, f1_max, image_auroc, pixel_auroc, pro_curve


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(size=200) + labels * 0.8
    return labels, scores


def test_image_and_pixel_auroc_match_scikit_learn(scored):
    labels, scores = scored
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    rng = np.random.default_rng(1)
    masks = (rng.random((3, 12, 12)) > 0.8).astype(np.uint8)
    maps = rng.random((3, 12, 12)) + masks * 0.3
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    assert pixel_auroc(list(masks), list(maps)) == pytest.approx(pixel_auroc(masks, maps))


def test_f1_max_is_the_best_f1_over_all_thresholds(scored):
    labels, scores = scored
    brute = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    assert f1_max(labels, scores) == pytest.approx(brute)


def test_accuracy_of_decisions():
    assert accuracy([1, 1, 0, 0, 1], [True, False, False, True, True]) == pytest.approx(0.6)
    assert accuracy([0, 0], [False, False]) == 1.0  # defined with one label


def test_one_label_only_gives_nan():
    assert math.isnan(image_auroc([0, 0, 0], [0.1, 0.5, 0.2]))
    assert math.isnan(f1_max([1, 1], [0.1, 0.5]))
    assert math.isnan(pixel_auroc(np.zeros((2, 4, 4)), np.random.default_rng(0).random((2, 4, 4))))
    assert math.isnan(aupro(np.zeros((2, 4, 4)), np.random.default_rng(0).random((2, 4, 4))))


def test_bad_inputs_raise_naming_the_problem():
    with pytest.raises(MetricError, match="3 values.*2 values"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(MetricError, match=r"\[0, 2\]"):
        image_auroc([0, 2], [0.1, 0.2])
    with pytest.raises(MetricError, match="NaN"):
        image_auroc([0, 1], [0.1, float("nan")])
    with pytest.raises(MetricError, match="fpr_limit"):
        aupro(np.ones((1, 2, 2)), np.ones((1, 2, 2)), fpr_limit=0)


def test_aupro_hand_computed_single_region():
    # one region of 2 px (scores 0.9, 0.5) and 6 normal px (0.8, 0.4, ...): the curve is
    # (0, 0) -> (0, .5) -> (1/6, .5) -> (1/6, 1) -> ...; area to 0.3 = 1/6 * .5 + (0.3 - 1/6) * 1
    masks = np.array([[[1, 1, 0, 0, 0, 0, 0, 0]]])
    maps = np.array([[[0.9, 0.5, 0.8, 0.4, 0.3, 0.2, 0.1, 0.05]]])
    expected = (1 / 6 * 0.5 + (0.3 - 1 / 6) * 1.0) / 0.3
    assert aupro(masks, maps) == pytest.approx(expected)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(1 / 6 * 0.5 + 5 / 6)


def test_aupro_averages_regions_not_pixels():
    # region A = 1 px (score 0.2, found late), region B = 3 px (0.9, found first), 6 normal px above 0.2
    # up to FPR 0.3 PRO is 0.5 (one region of two), pixel-weighted overlap would be 0.75
    masks = np.array([[[1, 0, 1, 1, 1, 0, 0, 0, 0, 0]]])
    maps = np.array([[[0.2, 0.5, 0.9, 0.9, 0.9, 0.4, 0.3, 0.25, 0.22, 0.21]]])
    assert aupro(masks, maps) == pytest.approx(0.5)


def test_regions_are_8_connected_and_per_image():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, 0, 0] = masks[0, 1, 1] = 1  # diagonal neighbours: one region of 2 px
    masks[1, 3, 3] = 1  # another image: a second region
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0] = 1.0  # half of region 1 found first
    fpr, pro = pro_curve(masks, maps)
    assert fpr[1] == 0.0
    assert pro[1] == pytest.approx(0.25)


def test_pro_curve_matches_brute_force_thresholds():
    import cv2

    rng = np.random.default_rng(3)
    masks = np.zeros((3, 10, 10), np.uint8)
    masks[0, 2:5, 2:6] = 1
    masks[1, 6:9, 1:3] = 1
    masks[1, 1:3, 7:9] = 1
    maps = np.round(rng.random((3, 10, 10)) + masks * 0.4, 2)  # rounding makes ties
    fpr, pro = pro_curve(masks, maps)
    regions = []
    for i in range(3):
        count, labels = cv2.connectedComponents(masks[i], connectivity=8)
        regions += [(i, labels == r) for r in range(1, count)]
    normal = masks == 0
    for t in np.unique(maps):
        want_fpr = (maps[normal] >= t).mean()
        want_pro = np.mean([(maps[i][r] >= t).mean() for i, r in regions])
        k = int(np.flatnonzero(np.isclose(fpr, want_fpr) & np.isclose(pro, want_pro)).size)
        assert k >= 1, f"threshold {t}: ({want_fpr}, {want_pro}) not on the curve"


def test_perfect_and_inverted_maps():
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, 2:4, 2:4] = 1
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    assert aupro(masks, 1.0 - masks) == pytest.approx(0.0)
    assert pixel_auroc(masks, masks.astype(float)) == pytest.approx(1.0)
