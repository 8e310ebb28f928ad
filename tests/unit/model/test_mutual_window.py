"""Cold start in the stream (model/mutual_window.py, Detector.score_cold_start): a frame is scored against the
class's recent frames; a defect stands out, the window stays bounded, no decision before the warm-up ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.exceptions import ModelError, ShapeError
from model.mutual import MutualConfig, mutual_scores
from model.mutual_window import UNDECIDED_THRESHOLD, MutualWindow, robust_threshold

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frame(generator: torch.Generator, base: torch.Tensor, odd: bool = False) -> list[torch.Tensor]:
    """One frame's features, one stage of 1 tile: the shared pattern plus noise; ``odd`` adds a unique patch."""
    features = base + 0.05 * torch.randn(1, 8, 6, 6, generator=generator)
    if odd:
        features[0, :, 2, 3] = 0.0
        features[0, 0, 2, 3] = 5.0
    return [features]


def test_scoring_only_some_frames_equals_their_rows_of_the_full_scoring():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(1, 8, 6, 6, generator=generator).abs()
    stacked = [torch.cat([_frame(generator, base, odd=i == 5)[0] for i in range(9)])]
    full = mutual_scores(stacked, 24, MutualConfig(window=5))
    part = mutual_scores(stacked, 24, MutualConfig(window=5), only=[8, 5])
    assert torch.allclose(part.maps, full.maps[[8, 5]])
    with pytest.raises(ShapeError, match=r"only must name frames in \[0, 9\)"):
        mutual_scores(stacked, 24, only=[9])


def test_a_stream_in_batches_flags_the_odd_frame_after_the_warm_up_and_keeps_the_window_bounded():
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(1, 8, 6, 6, generator=generator).abs()
    window = MutualWindow(MutualConfig(window=6), tile_px=None, score_history=16, min_decision_frames=6)
    decisions, methods = [], []
    for batch_index in range(6):  # 6 batches of 3 frames; frame 13 is the odd one
        batch = [_frame(generator, base, odd=3 * batch_index + i == 13) for i in range(3)]
        maps = window.tile_maps(batch, 24)
        scores = [float(m.max()) for m in maps]
        window.push(batch, scores)
        threshold, method = window.threshold()
        decisions += [s > threshold for s in scores]
        methods.append(method)
        assert len(window) <= 5  # W - 1 frames of features, never more
    assert methods[0] == "cold-start warm-up 3/6"
    assert methods[-1] == "cold-start median+3MAD of 16"
    assert [i for i, flagged in enumerate(decisions) if flagged] == [13]
    assert window.frames_seen == 18
    assert len(window.scores) == 16


def test_the_first_frame_alone_gets_a_zero_map_and_no_decision():
    window = MutualWindow(MutualConfig(window=4), tile_px=None, min_decision_frames=2)
    maps = window.tile_maps([[torch.randn(1, 8, 6, 6)]], 16)
    assert maps.shape == (1, 16, 16)
    assert float(maps.abs().max()) == 0.0
    window.push([[torch.randn(1, 8, 6, 6)]], [0.0])
    assert window.threshold() == (UNDECIDED_THRESHOLD, "cold-start warm-up 1/2")


def test_bad_inputs_are_named():
    with pytest.raises(ModelError, match="min_decision_frames <= score_history, got 10 and 4"):
        MutualWindow(MutualConfig(), tile_px=None, score_history=4, min_decision_frames=10)
    with pytest.raises(ModelError, match="finite"):
        robust_threshold([0.1, float("inf")])
    window = MutualWindow(MutualConfig(window=4), tile_px=None)
    with pytest.raises(ShapeError, match="frame 1 of the batch"):
        window.tile_maps([[torch.randn(1, 8, 6, 6)], [torch.randn(2, 8, 6, 6)]], 16)
    with pytest.raises(ShapeError, match="2 frames but 1 scores"):
        window.push([[torch.randn(1, 8, 6, 6)]] * 2, [0.1])


def test_detector_cold_start_flags_a_synthetic_defect_and_tiles_large_frames():
    from model.detector import Detector
    from model.encoders.efficientnet import EfficientNetLiteEncoder
    from training.synthetic import SyntheticLine, normal_images

    detector = Detector(EfficientNetLiteEncoder())
    frames = normal_images("washer", 11, seed=3)
    frames.insert(9, SyntheticLine(("washer",), defect_rate=1.0, seed=5).next_frame().image)
    window = MutualWindow(MutualConfig(window=8), tile_px=None, score_history=32, min_decision_frames=6)
    results = [r for start in range(0, 12, 4) for r in detector.score_cold_start(frames[start : start + 4], window)]
    assert [r.is_anomalous for r in results].index(True) == 9
    assert sum(r.is_anomalous for r in results) == 1
    assert results[0].threshold == UNDECIDED_THRESHOLD
    assert results[0].threshold_method.startswith("cold-start warm-up")
    assert results[-1].threshold_method == "cold-start median+3MAD of 12"
    assert results[9].region_count >= 1
    assert results[9].anomaly_map.shape == (224, 224)

    tiled = MutualWindow(MutualConfig(window=4), tile_px=224, min_decision_frames=2)
    wide = [np.ascontiguousarray(np.concatenate([f, f], axis=1)) for f in frames[:3]]  # 224 x 448: 3 tiles (overlap)
    out = detector.score_cold_start(wide, tiled)
    assert tiled.grid.count == 3
    assert out[0].anomaly_map.shape == (224, 448)
    assert out[0].frame_size == (224, 448)
