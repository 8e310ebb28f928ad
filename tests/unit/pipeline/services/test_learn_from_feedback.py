"""A frame an operator marks as a false alarm joins the class's references in a new bank version,
and a frame of the same kind is no longer flagged by it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from linesight.errors import ConfigError
from linesight.settings import load_settings
from model.bank import MemoryBank
from model.factory import build_detector
from pipeline.services.banks import BankManager
from storage.records import png_from_map, png_from_mask
from tests.unit.storage.helpers import make_record
from training.synthetic import normal_images


def stamped(image: np.ndarray) -> np.ndarray:
    """A harmless print the references never showed (a date stamp on the part)."""
    out = image.copy()
    cv2.rectangle(out, (150, 20), (200, 40), (20, 20, 160), thickness=-1)
    return out


@pytest.fixture
def manager(tmp_path):
    settings = load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}", engine="torch")
    return BankManager(settings)


def test_a_false_alarm_stops_recurring_after_the_new_version(manager):
    manager.build("washer", normal_images("washer", 2, seed=1), rotations=False)
    detector = build_detector(encoder=manager.encoder)
    flagged, later = stamped(normal_images("washer", 1, seed=7)[0]), stamped(normal_images("washer", 1, seed=8)[0])
    v1 = MemoryBank.load(manager.repository.active_banks()["washer"].path)
    before = detector.score_batch([flagged, later], v1)
    assert before[0].is_anomalous
    assert before[1].is_anomalous  # the stamp is flagged on every part

    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(flagged, cv2.COLOR_RGB2BGR))
    heat = np.zeros((224, 224), np.float32)
    manager.repository.upsert_inspections([make_record(
        3, frame_id="fa-1", product_class="washer", is_anomalous=True, frame_image=jpeg.tobytes(),
        anomaly_map_png=png_from_map(heat), mask_png=png_from_mask(heat > 0.5),
    )])
    manager.repository.set_feedback("fa-1", "false_alarm")
    row = manager.learn_from_feedback("washer")
    assert row.version == 2
    assert manager.repository.active_banks()["washer"].version == 2
    v2 = MemoryBank.load(row.path)
    assert v2.learned_frames == ("fa-1",)
    assert v2.calibration == v1.calibration
    after = detector.score_batch([later, normal_images("washer", 1, seed=9)[0]], v2)
    assert not after[0].is_anomalous, (after[0].score, after[0].threshold)
    assert after[0].score < before[1].score
    assert not after[1].is_anomalous  # ordinary parts stay normal
    assert manager.learn_from_feedback("washer") is None  # nothing new: no version 3


def test_learning_needs_an_active_bank(manager):
    with pytest.raises(ConfigError, match="'bracket' has no active bank"):
        manager.learn_from_feedback("bracket")


def test_self_calibration_is_a_new_reversible_version(manager):
    manager.build("washer", normal_images("washer", 2, seed=1), rotations=False)
    v1 = manager.repository.active_banks()["washer"]
    rng = np.random.default_rng(1)
    scores = list(rng.normal(0.5 * v1.calibration["threshold"], 0.005, 60))
    manager.repository.upsert_inspections([
        make_record(100 + i, frame_id=f"s-{i}", product_class="washer", score=float(s), bank_version=1)
        for i, s in enumerate(scores)
    ])
    row = manager.self_calibrate("washer")
    assert row.version == 2
    assert row.calibration["method"] == "stream-robust"
    assert row.calibration["threshold"] < v1.calibration["threshold"]
    assert row.calibration["threshold"] >= 0.7 * v1.calibration["threshold"] - 1e-9
    assert MemoryBank.load(row.path).stage_features[0].shape == MemoryBank.load(v1.path).stage_features[0].shape
    manager.activate("washer", 1)  # reversible
    assert manager.repository.active_banks()["washer"].version == 1
    manager.activate("washer", 2)
    with pytest.raises(ConfigError, match="only 0 frames scored by v2"):
        manager.self_calibrate("washer")
