"""Detector end to end on synthetic frames: scores, decisions, masks, regions, mixed batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.answers import parse_answer
from model.bank import MemoryBank
from model.detector import Detector
from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.exceptions import BankFileError, ShapeError
from model.fewshot import build_bank
from model.positions import POSITION_NAMES
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
        assert parse_answer(result.verdict)[:2] == (result.is_anomalous, result.positions)


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
    with pytest.raises(BankFileError, match="washer@v2.*'clip-vit'"):
        detector.score_batch(normal_images("washer", 1), other)
    with pytest.raises(ShapeError, match="2 images but 1 banks"):
        detector.score_batch_mixed(normal_images("washer", 2), [banks["washer"]])
    assert detector.score_batch([], banks["washer"]) == []


# --- zero-shot and fused maps (a random decoder: the arithmetic, not the accuracy) ---------------


@pytest.fixture(scope="module")
def head(encoder: EfficientNetLiteEncoder):
    from model.decoder import TextAlignedDecoder
    from model.zero_shot import ZeroShotHead

    torch.manual_seed(0)
    decoder = TextAlignedDecoder(encoder.stage_channels, 16, image_size_px=encoder.image_size_px)
    anchors = {name: torch.randn(2, 16, generator=torch.Generator().manual_seed(i))
               for i, name in enumerate(("washer", "bracket"))}
    return ZeroShotHead(decoder, anchors.__getitem__)


def test_zero_shot_scores_with_the_decoder_alone(encoder, head) -> None:
    from model.detector import ZERO_SHOT_THRESHOLD

    detector = Detector(encoder, zero_shot=head)
    images = normal_images("washer", 2, seed=3) + normal_images("bracket", 1, seed=3)
    results = detector.score_zero_shot(images, ["washer", "washer", "bracket"])
    with torch.inference_mode():
        features = encoder(encoder.preprocess(images)).patch_features
        expected = head.maps([f[2:] for f in features], "bracket")[0].numpy()
    assert np.allclose(results[2].anomaly_map, expected, atol=1e-5)
    for result in results:
        assert result.threshold == ZERO_SHOT_THRESHOLD
        assert float(result.anomaly_map.min()) >= 0.0
        assert float(result.anomaly_map.max()) <= 1.0
        assert result.is_anomalous == (result.score > ZERO_SHOT_THRESHOLD)


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_fused_maps_are_in_units_of_each_threshold(encoder, banks, head, fusion) -> None:
    images = normal_images("washer", 2, seed=4)
    few = Detector(encoder).score_batch(images, banks["washer"])
    zero = Detector(encoder, zero_shot=head).score_zero_shot(images, ["washer"] * 2)
    fused = Detector(encoder, zero_shot=head, fusion=fusion).score_batch(images, banks["washer"])
    for f, z, m in zip(few, zero, fused, strict=True):
        a, b = f.anomaly_map / f.threshold, z.anomaly_map / z.threshold
        expected = (a + b) / 2 if fusion == "mean" else np.maximum(a, b)
        assert np.allclose(m.anomaly_map, expected, atol=1e-4)
        assert m.threshold == 1.0
        assert m.is_anomalous == (m.score > 1.0) == bool(m.mask.any())


def test_fusion_and_zero_shot_need_a_decoder_that_fits(encoder, head) -> None:
    from model.decoder import TextAlignedDecoder
    from model.exceptions import ModelError
    from model.zero_shot import ZeroShotHead

    with pytest.raises(ModelError, match="'median'"):
        Detector(encoder, fusion="median")
    with pytest.raises(ModelError, match="'mean' needs a trained decoder"):
        Detector(encoder, fusion="mean")
    with pytest.raises(ModelError, match="zero-shot scoring needs"):
        Detector(encoder).score_zero_shot(normal_images("washer", 1), ["washer"])
    wrong = ZeroShotHead(TextAlignedDecoder((8, 8, 8, 8), 16, image_size_px=224), head.text_features)
    with pytest.raises(ModelError, match=r"\(8, 8, 8, 8\)"):
        Detector(encoder, zero_shot=wrong)


def test_a_tiled_banks_edge_band_is_not_judged() -> None:
    from model.detector import EDGE_BAND_FRACTION, _without_edge_band, edge_band_px

    anomaly_map = torch.full((100, 200), 0.5)
    rows, cols = edge_band_px(100, 200)
    assert (rows, cols) == (round(EDGE_BAND_FRACTION * 100), round(EDGE_BAND_FRACTION * 200))
    out = _without_edge_band(anomaly_map)
    assert float(anomaly_map.min()) == 0.5  # the input is left as it was
    assert float(out[:rows].max()) == float(out[:, -cols:].max()) == 0.0
    assert float(out[rows:-rows, cols:-cols].min()) == 0.5  # the inside is judged as before
    assert torch.equal(_without_edge_band(torch.ones(3, 3)), torch.ones(3, 3))  # too small for a band: unchanged
