"""One way to build the scoring stack: the config validates, the app's settings map onto it."""

from __future__ import annotations

from pathlib import Path

import pytest

from linesight.settings import load_settings
from model.exceptions import ModelError
from model.factory import DetectorConfig, build_detector


def test_settings_map_onto_the_config():
    settings = load_settings(image_size_px=448, map_fusion="few_only", torch_threads=2, engine="torch")
    config = DetectorConfig.from_settings(settings)
    assert (config.image_size_px, config.fusion, config.threads, config.engine) == (448, "few_only", 2, "torch")
    assert DetectorConfig.from_settings(settings, zero_shot=False, threads=1).threads == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"fusion": "sum"}, "unknown fusion 'sum'"), ({"fusion": "mean"}, "need checkpoint_dir"),
     ({"zero_shot": True}, "need checkpoint_dir"), ({"threads": 0}, "threads must be >= 1, got 0")],
)
def test_a_bad_config_names_the_value(changes, message):
    with pytest.raises(ModelError, match=message):
        DetectorConfig(**changes)


def test_build_detector_uses_the_given_encoder_and_the_fusion(tmp_path: Path):
    from model.encoders.efficientnet import EfficientNetLiteEncoder

    encoder = EfficientNetLiteEncoder(pretrained=False)
    detector = build_detector(DetectorConfig(engine="torch"), encoder=encoder)
    assert detector.encoder is encoder
    assert detector.fusion == "few_only"
    assert detector.zero_shot is None
    with pytest.raises(Exception, match=str(tmp_path / "nowhere")):
        build_detector(DetectorConfig(engine="torch", fusion="mean", checkpoint_dir=tmp_path / "nowhere"), encoder=encoder)
