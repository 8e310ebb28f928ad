"""InspectionRecord validation and the PNG codecs of maps and masks."""

from __future__ import annotations

import pickle
from datetime import datetime

import numpy as np
import pytest

from storage.exceptions import InvalidRecordError
from storage.records import map_from_png, mask_from_png, png_from_map, png_from_mask, png_size_px
from tests.unit.storage.helpers import make_record


def test_map_png_round_trip_is_within_one_quantisation_step():
    heat = np.random.default_rng(1).random((224, 200), dtype=np.float32)
    decoded = map_from_png(png_from_map(heat))
    assert decoded.shape == (224, 200)
    assert decoded.dtype == np.float32
    assert np.abs(decoded - heat).max() <= 1 / 510 + 1e-6


def test_map_png_clips_out_of_range_and_refuses_nan():
    decoded = map_from_png(png_from_map(np.array([[-1.0, 2.0]], np.float32)))
    assert decoded.tolist() == [[0.0, 1.0]]
    with pytest.raises(InvalidRecordError, match="NaN"):
        png_from_map(np.array([[np.nan, 0.5]], np.float32))
    with pytest.raises(InvalidRecordError, match=r"\(2, 2, 3\)"):
        png_from_map(np.zeros((2, 2, 3), np.float32))


def test_mask_png_is_binary_and_accepts_bool_01_and_255():
    expected = np.array([[0, 1], [1, 0]], np.uint8)
    for mask in (expected.astype(bool), expected, expected * 255):
        png = png_from_mask(mask)
        np.testing.assert_array_equal(mask_from_png(png), expected)
        assert set(np.unique(map_from_png(png))) <= {0.0, 1.0}
    assert png_size_px(png_from_mask(np.zeros((3, 7), np.uint8))) == (7, 3)


def test_undecodable_png_is_named():
    with pytest.raises(InvalidRecordError, match="not a decodable PNG"):
        map_from_png(b"garbage")
    with pytest.raises(InvalidRecordError, match="PNG header"):
        png_size_px(b"\x89PNG")


def test_record_validates_fields():
    assert make_record(3).positions == ("top left", "center")  # list in, tuple stored
    with pytest.raises(InvalidRecordError, match="captured_at of frame 'f-1'"):
        make_record(1, captured_at=datetime(2026, 1, 1))
    with pytest.raises(InvalidRecordError, match="'oracle'"):
        make_record(1, verdict_source="oracle")
    with pytest.raises(InvalidRecordError, match="mask_png of frame 'f-1'"):
        make_record(1, mask_png=b"not a png")
    with pytest.raises(InvalidRecordError, match="frame_id"):
        make_record(1, frame_id="")


def test_record_pickles():
    record = make_record(2)
    assert pickle.loads(pickle.dumps(record)) == record
