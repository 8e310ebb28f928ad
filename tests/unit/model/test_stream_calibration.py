"""Self-calibration from the stream: robust to a few % defects, bounded by the bank-time threshold."""

from __future__ import annotations

import numpy as np
import pytest

from model.calibration import STREAM_METHOD, choose_threshold, stream_threshold
from model.exceptions import ModelError

BANK = choose_threshold([0.30, 0.32, 0.35], [0.8, 0.9])  # bank-time threshold sits high (bold synthetic defects)


def test_a_few_percent_defects_barely_move_the_refined_threshold():
    rng = np.random.default_rng(0)
    normal = rng.normal(0.25, 0.01, 400)
    clean = stream_threshold(normal, BANK)
    dirty = stream_threshold(np.concatenate([normal, rng.uniform(0.4, 0.9, 20)]), BANK)  # 5 % defects
    assert clean.method == STREAM_METHOD
    assert abs(dirty.threshold - clean.threshold) < 0.01
    assert dirty.threshold > np.quantile(normal, 0.99)  # above the normal frames' tail


def test_the_stream_cannot_drag_the_threshold_far_from_the_bank():
    assert stream_threshold(np.full(100, 0.01), BANK).threshold == pytest.approx(BANK.threshold * 0.7)
    assert stream_threshold(np.full(100, 0.99), BANK).threshold == pytest.approx(BANK.threshold * 1.3)


def test_too_few_frames_is_a_clear_error():
    with pytest.raises(ModelError, match="at least 50 scored frames, got 10"):
        stream_threshold(np.full(10, 0.2), BANK)
