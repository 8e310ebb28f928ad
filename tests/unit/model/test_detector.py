"""Detector end to end on synthetic frames: scores, decisions, masks, regions, mixed batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.bank import MemoryBank
from model.detector import Detector
from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.exceptions import BankFileError, ShapeError
from model.positions import POSITION_NAMES
from model.verdict import parse_verdict
from training.fewshot import build_bank
from training.synthetic import SyntheticLine, normal_images


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLiteEncoder:
    torch.set_num_threads(2)
    return EfficientNetLiteEncoder()


@pytest.fixture(scope="module")
def banks(encoder: EfficientNetLiteEncoder) -> dict[str, MemoryBank]:
    return {
        "washer": build_bank(encoder, normal_images("washer", 3), "washer", 1, rotations=True),
        "bracket": build_bank(encoder, normal_images("bracket", 3), "bracket", 1, rotations=False),
    }


def test_defective_frames_score_higher(encoder: EfficientNetLiteEncoder, banks: dict[str, MemoryBank]) -> None:
    detector = Detector(encoder)
    line = SyntheticLine(product_classes=("washer",), defect_rate=0.5, seed=7)
    frames = [line.next_frame() for _ in range(16)]
    results = detector.score_batch([f.image for f in frames], banks["washer"])
    normal = [r.score for f, r in zip(frames, results, strict=True) if not f.is_defective]
    defective = [r.score for f, r in zip(frames, results, strict=True) if f.is_defective]
    assert normal
    assert defective
    assert np.mean(defective) > np.mean(normal)
    for result in results:
        assert result.anomaly_map.shape == (224, 224)
        assert result.anomaly_map.dtype == np.float32
        assert result.mask.dtype == np.uint8
        assert set(np.unique(result.mask)) <= {0, 1}
        assert result.score == pytest.approx(float(result.anomaly_map.max()))
        assert result.threshold == banks["washer"].calibration.threshold
        assert result.is_anomalous == (result.score > result.threshold)
        assert result.is_anomalous == bool(result.mask.any()) == (result.region_count > 0)
        assert len(result.positions) == result.region_count
        assert set(result.positions) <= set(POSITION_NAMES)
        assert parse_verdict(result.verdict) == (result.is_anomalous, result.positions)


def test_mixed_batch_equals_per_class_batches(encoder: EfficientNetLiteEncoder, banks: dict[str, MemoryBank]) -> None:
    detector = Detector(encoder)
    line = SyntheticLine(product_classes=("washer", "bracket"), defect_rate=0.3, seed=2)
    frames = [line.next_frame() for _ in range(6)]
    mixed = detector.score_batch_mixed([f.image for f in frames], [banks[f.product_class] for f in frames])
    for frame, result in zip(frames, mixed, strict=True):
        alone = detector.score_batch([frame.image], banks[frame.product_class])[0]
        assert result.score == pytest.approx(alone.score, abs=1e-5)
        assert result.is_anomalous == alone.is_anomalous


def test_obvious_defect_is_flagged_and_located(encoder: EfficientNetLiteEncoder, banks: dict[str, MemoryBank]) -> None:
    image = normal_images("bracket", 1, seed=9)[0].copy()
    image[150:175, 120:150] = (250, 30, 30)  # a red blob on the lower part of the plate
    result = Detector(encoder).score_batch([image], banks["bracket"])[0]
    assert result.is_anomalous
    assert result.positions[0] == "bottom"
    assert result.mask[160, 135] == 1


def test_bank_and_input_mismatches(encoder: EfficientNetLiteEncoder, banks: dict[str, MemoryBank]) -> None:
    detector = Detector(encoder)
    other = MemoryBank(
        [f.clone() for f in banks["washer"].stage_features],
        product_class="washer",
        version=2,
        shots=3,
        encoder_name="clip-vit",
        image_size_px=224,
        calibration=banks["washer"].calibration,
    )
    with pytest.raises(BankFileError, match="washer@2.*'clip-vit'"):
        detector.score_batch(normal_images("washer", 1), other)
    with pytest.raises(ShapeError, match="2 images but 1 banks"):
        detector.score_batch_mixed(normal_images("washer", 2), [banks["washer"]])
    assert detector.score_batch([], banks["washer"]) == []
