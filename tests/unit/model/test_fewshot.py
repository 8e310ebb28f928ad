"""build_bank: automatic calibration from k shots, rotations, coreset, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.coreset import coreset_size
from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.exceptions import BankBuildError
from model.fewshot import (
    DEFAULT_CORESET_RATIO,
    SINGLE_SHOT_VIEWS,
    VIEWS_PER_SHOT,
    augmented_views,
    build_bank,
    transport_round_trip,
)
from training.synthetic import normal_images


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLiteEncoder:
    torch.set_num_threads(2)
    return EfficientNetLiteEncoder()


def test_calibrated_bank_from_shots(encoder: EfficientNetLiteEncoder) -> None:
    shots = normal_images("washer", 3)
    bank = build_bank(encoder, shots, "washer", 4, rotations=True)
    assert (bank.product_class, bank.version, bank.shots, bank.encoder_name) == ("washer", 4, 3, "efficientnet-lite0")
    assert bank.stage_channels == encoder.stage_channels
    assert bank.stage_features[0].shape[0] == coreset_size(3 * 4 * 28 * 28, DEFAULT_CORESET_RATIO)  # shots x rotations x patches
    calibration = bank.calibration
    assert calibration.normal_count == 3 * (1 + VIEWS_PER_SHOT)  # leave-one-out: each shot and its views
    assert calibration.anomaly_count >= 16
    assert calibration.normal_max < calibration.threshold < calibration.anomaly_mean
    assert calibration.balanced_accuracy > 0.8


def test_single_shot_uses_augmented_views(encoder: EfficientNetLiteEncoder) -> None:
    bank = build_bank(encoder, normal_images("bracket", 1), "bracket", 1, rotations=False, coreset_ratio=1.0)
    assert bank.stage_features[0].shape[0] == 28 * 28  # ratio 1: every row
    assert bank.calibration.normal_count == 1 + SINGLE_SHOT_VIEWS
    assert bank.calibration.normal_mean < bank.calibration.threshold < bank.calibration.anomaly_mean


def test_coreset_and_determinism(encoder: EfficientNetLiteEncoder) -> None:
    shots = normal_images("gravel", 2)
    a = build_bank(encoder, shots, "gravel", 1, rotations=False, coreset_ratio=0.25, seed=3)
    b = build_bank(encoder, shots, "gravel", 1, rotations=False, coreset_ratio=0.25, seed=3)
    assert a.stage_features[0].shape[0] == round(2 * 28 * 28 * 0.25)
    assert a.calibration == b.calibration
    assert all(torch.equal(x, y) for x, y in zip(a.stage_features, b.stage_features, strict=True))


def test_augmented_views_move_the_image() -> None:
    image = normal_images("brick", 1)[0]
    views = augmented_views(image, 3, np.random.default_rng(0))
    assert all(v.shape == image.shape and v.dtype == np.uint8 for v in views)
    assert all(not np.array_equal(v, image) for v in views)


def test_bad_inputs_name_the_problem(encoder: EfficientNetLiteEncoder) -> None:
    with pytest.raises(BankBuildError, match="at least one"):
        build_bank(encoder, [], "washer", 1)
    with pytest.raises(BankBuildError, match="image 1 must be uint8"):
        build_bank(encoder, [normal_images("washer", 1)[0], np.zeros((8, 8), np.uint8)], "washer", 1)
    with pytest.raises(BankBuildError, match="2.0"):
        build_bank(encoder, normal_images("washer", 1), "washer", 1, coreset_ratio=2.0)


def test_calibration_views_take_the_jpeg_round_trip() -> None:
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert transport_round_trip(image, None) is image
    compressed = transport_round_trip(image, 90)
    assert compressed.shape == image.shape
    assert not np.array_equal(compressed, image)  # what the stream sees differs from the raw shot


def test_tiled_banks_calibrate_leave_one_out_and_skip_the_edge_band(encoder: EfficientNetLiteEncoder) -> None:
    import cv2

    from model.detector import Detector

    shots = [cv2.resize(i, (320, 320), interpolation=cv2.INTER_CUBIC) for i in normal_images("gravel", 3)]
    bank = build_bank(encoder, shots, "gravel", 1, tile_px=224)
    assert bank.stages == (0, 1, 2, 3)
    assert bank.calibration.normal_count == 3  # each shot against the other two: what a new frame looks like
    assert build_bank(encoder, shots[:2], "gravel", 1, tile_px=224, stages=(2,)).stages == (2,)  # explicit wins
    fresh = cv2.resize(normal_images("gravel", 1, seed=9)[0], (320, 320), interpolation=cv2.INTER_CUBIC)
    frame = Detector(encoder).score_batch([fresh], bank)[0]
    assert frame.anomaly_map[0].max() == 0.0  # the edge is not judged
    assert frame.anomaly_map[:, -1].max() == 0.0
    assert frame.anomaly_map.max() > 0.0


def test_tiled_banks_of_three_shots_lower_their_leave_one_out_normals(encoder: EfficientNetLiteEncoder,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    import model.fewshot as fewshot

    shots = [cv2.resize(i, (320, 320), interpolation=cv2.INTER_CUBIC) for i in normal_images("gravel", 3)]
    corrected = build_bank(encoder, shots, "gravel", 1, tile_px=224).calibration
    monkeypatch.setattr(fewshot, "LEAVE_ONE_OUT_BIAS_MIN_SHOTS", 99)  # no correction
    plain = build_bank(encoder, shots, "gravel", 1, tile_px=224).calibration
    assert corrected.normal_count == plain.normal_count == 3
    shift = plain.normal_mean - corrected.normal_mean
    assert shift > 0  # one shot fewer raises a normal frame's score: leave-one-out normals are lowered
    assert corrected.normal_max == pytest.approx(plain.normal_max - shift)  # the same shift for every normal
    assert corrected.anomaly_mean == plain.anomaly_mean  # the synthetic defects are left as they are
    assert corrected.threshold <= plain.threshold
    assert corrected.threshold >= corrected.normal_max  # never below a shot scored leave-one-out (the floor)


def test_tiled_banks_of_several_shots_floor_the_threshold_at_their_shots(encoder: EfficientNetLiteEncoder,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import model.fewshot as fewshot

    floors: list[float | None] = []
    choose = fewshot.choose_threshold

    def spy(normal, anomaly, *, floor=None):
        floors.append(floor)
        return choose(normal, anomaly, floor=floor)

    monkeypatch.setattr(fewshot, "choose_threshold", spy)
    import cv2

    shots = [cv2.resize(i, (320, 320), interpolation=cv2.INTER_CUBIC) for i in normal_images("gravel", 2)]
    bank = build_bank(encoder, shots, "gravel", 1, tile_px=224)
    assert floors[-1] == pytest.approx(bank.calibration.normal_max)  # 2 shots, no moved copies: the shots
    assert bank.calibration.threshold >= floors[-1]
    build_bank(encoder, shots[:1], "gravel", 1, tile_px=224)
    assert floors[-1] is None  # one shot: nothing was left out
    build_bank(encoder, normal_images("gravel", 2), "gravel", 1, rotations=False)
    assert floors[-1] is None  # whole-frame banks: no floor (model/fewshot.py, step 4)


def test_whole_frame_banks_keep_their_leave_one_out_normals(encoder: EfficientNetLiteEncoder,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import model.fewshot as fewshot

    shots = normal_images("gravel", 3)
    default = build_bank(encoder, shots, "gravel", 1, rotations=False).calibration
    monkeypatch.setattr(fewshot, "LEAVE_ONE_OUT_BIAS_MIN_SHOTS", 99)
    assert build_bank(encoder, shots, "gravel", 1, rotations=False).calibration == default


def _fixed_camera(count: int, seed: int = 0) -> list[np.ndarray]:
    """Exposures of one part by a fixed camera (training/realistic.py): shift, turn, gain, noise, JPEG."""
    from training.realistic import exposure, source_photo

    rng = np.random.default_rng(seed)
    photo = source_photo("brick", 0.2)  # 447 x 447 px: 4 tiles of 224 px
    return [exposure(photo, rng) for _ in range(count)]


def test_a_fixed_camera_bank_keeps_the_pixel_residual_and_it_finds_a_faint_scratch(encoder, caplog) -> None:
    from model.detector import Detector
    from model.fewshot import extend_bank
    from training.realistic import source_photo

    shots, tests = _fixed_camera(2), _fixed_camera(2, seed=5)
    bank = build_bank(encoder, shots, "brick", 1, tile_px=224)
    assert bank.references is not None
    assert tuple(bank.references.shape) == (2, *shots[0].shape[:2])
    assert bank.residual_weight > 0
    scratched = tests[1].copy()
    scratched[200:202, 120:260] = (scratched[200:202, 120:260] * 0.8).astype(np.uint8)  # 2 px, 20 % darker
    normal, defect = Detector(encoder).score_batch([tests[0], scratched], bank)
    assert not normal.is_anomalous
    assert defect.is_anomalous
    y, x = np.unravel_index(int(defect.anomaly_map.argmax()), defect.anomaly_map.shape)
    assert 180 <= y * 447 / defect.anomaly_map.shape[0] <= 222  # the peak sits on the scratch
    with caplog.at_level("WARNING", logger="model.detector"):
        other = Detector(encoder).score_batch([source_photo("gravel", 0.2)], bank)[0]  # another part under the camera
    assert "did not register to its references" in caplog.text  # judged by its features alone, and said so
    assert other.score > 0
    learned = extend_bank(encoder, bank, [scratched], ["frame-7"], 2)
    assert learned.references.shape[0] == 3  # an operator's normal frame joins the pixel references too
    assert learned.residual_weight == bank.residual_weight
    with pytest.raises(BankBuildError, match="frame 'frame-8' does not register"):  # named, nothing half-built
        extend_bank(encoder, bank, [source_photo("gravel", 0.2)], ["frame-8"], 3)


def test_parts_that_differ_keep_no_pixel_residual(encoder) -> None:
    import cv2

    shots = [cv2.resize(i, (320, 320), interpolation=cv2.INTER_CUBIC) for i in normal_images("gravel", 2)]
    assert build_bank(encoder, shots, "gravel", 1, tile_px=224).references is None  # different stones: no register
    assert build_bank(encoder, _fixed_camera(1), "brick", 1, tile_px=224).references is None  # one shot: nothing to calibrate on
    assert build_bank(encoder, normal_images("gravel", 2), "gravel", 1).references is None  # whole frames: no fixed camera
