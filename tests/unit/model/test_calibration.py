"""Automatic threshold choice on known score sets."""

from __future__ import annotations

import numpy as np
import pytest

from model.calibration import Calibration, choose_threshold
from model.exceptions import ModelError


def test_separable_sets_put_the_threshold_in_the_gap() -> None:
    calibration = choose_threshold([0.10, 0.11, 0.12], [0.30, 0.40])
    assert 0.12 < calibration.threshold < 0.30
    assert calibration.balanced_accuracy == 1.0
    assert calibration.normal_max == pytest.approx(0.12)
    assert calibration.anomaly_min == pytest.approx(0.30)


def test_separable_threshold_respects_the_normal_tail() -> None:
    # wide normal spread: mean + 3 std is beyond the midpoint of the gap, so it is capped there
    assert choose_threshold([0.0, 0.2, 0.4], [0.6]).threshold == pytest.approx(0.5)
    # tight normal scores: at least 1/10 of the gap above the largest normal score
    assert choose_threshold([0.1, 0.1, 0.1], [0.3]).threshold == pytest.approx(0.12)
    # in between: mean + 3 std of the normal scores
    normal = np.array([0.10, 0.11, 0.12])
    expected = normal.mean() + 3 * normal.std()
    assert choose_threshold(normal, [0.2]).threshold == pytest.approx(expected)


def test_overlapping_sets_maximise_balanced_accuracy() -> None:
    rng = np.random.default_rng(0)
    normal, anomaly = rng.normal(0.2, 0.05, 200), rng.normal(0.35, 0.05, 50)
    calibration = choose_threshold(normal, anomaly)
    grid = np.linspace(0.0, 0.6, 2001)
    best = max(0.5 * ((normal <= t).mean() + (anomaly > t).mean()) for t in grid)
    assert calibration.balanced_accuracy == pytest.approx(best, abs=1e-9)
    assert 0.2 < calibration.threshold < 0.35


def test_plateau_takes_the_midpoint() -> None:
    # every t in [0.3, 0.9) gives balanced accuracy 5/6 (t < 0.5 misses the normal 0.5, t >= 0.5
    # misses the anomaly 0.5): the midpoint of that plateau is 0.6
    calibration = choose_threshold([0.1, 0.3, 0.5], [0.5, 0.9, 1.0])
    assert calibration.threshold == pytest.approx(0.6)
    assert calibration.balanced_accuracy == pytest.approx(5 / 6)


def test_disjoint_plateaus_pick_the_longest_run() -> None:
    # best accuracy is reached on two separate runs of candidates; the threshold is inside one of them
    normal, anomaly = [0.1, 0.2, 0.6], [0.4, 0.5, 0.9]
    calibration = choose_threshold(normal, anomaly)
    grid = np.linspace(0, 1, 1001)
    best = max(0.5 * ((np.array(normal) <= t).mean() + (np.array(anomaly) > t).mean()) for t in grid)
    assert calibration.balanced_accuracy == pytest.approx(best)


def test_round_trip_and_bad_dicts() -> None:
    calibration = choose_threshold([0.1, 0.2], [0.5, 0.6])
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    data = calibration.to_dict()
    del data["threshold"]
    with pytest.raises(ModelError, match="threshold"):
        Calibration.from_dict(data)
    with pytest.raises(ModelError, match="finite"):
        Calibration.from_dict({**calibration.to_dict(), "threshold": float("nan")})


@pytest.mark.parametrize(
    ("normal", "anomaly", "message"),
    [([], [0.5], "normal"), ([0.1], [], "anomaly"), ([0.1, float("nan")], [0.5], "non-finite"), ([0.5], [0.1], "<=")],
)
def test_impossible_inputs(normal: list[float], anomaly: list[float], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        choose_threshold(normal, anomaly)


def test_a_floor_keeps_the_threshold_above_the_known_normals() -> None:
    # synthetic defects that score below real normals (realistic benchmark, motorcycle) pull the
    # balanced-accuracy threshold under the normal shots; the floor keeps it at the largest of them
    normal, anomaly = [0.222, 0.230, 0.231, 0.279], [0.197, 0.25, 0.26, 0.30, 0.31]
    free = choose_threshold(normal, anomaly)
    assert free.threshold < max(normal)
    floored = choose_threshold(normal, anomaly, floor=max(normal))
    assert floored.threshold == pytest.approx(max(normal))
    assert floored.balanced_accuracy <= free.balanced_accuracy  # it gives up some, on synthetic defects
    assert choose_threshold(normal, anomaly, floor=0.1).threshold == free.threshold  # a low floor changes nothing
    with pytest.raises(ModelError, match="floor"):
        choose_threshold(normal, anomaly, floor=float("inf"))
