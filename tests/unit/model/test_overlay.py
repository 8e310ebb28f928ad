import cv2
import numpy as np

from model.overlay import encode_png, heat_rgba, render_overlay


def test_overlay_outlines_the_mask_in_red_and_keeps_size():
    image = np.full((100, 120, 3), 200, np.uint8)
    anomaly_map = np.zeros((50, 50), np.float32)
    mask = np.zeros((50, 50), np.uint8)
    mask[10:20, 10:20] = 1
    overlay = render_overlay(image, anomaly_map, mask)
    assert overlay.shape == image.shape
    red = (overlay[..., 0] == 255) & (overlay[..., 1] == 0) & (overlay[..., 2] == 0)
    assert red.any()
    ys, xs = np.nonzero(red)
    assert ys.max() < 50
    assert xs.max() < 60


def test_heat_only_above_the_threshold_and_the_rest_untouched():
    image = np.full((64, 64, 3), 90, np.uint8)
    anomaly_map = np.zeros((64, 64), np.float32)
    anomaly_map[:, 32:48] = 0.7  # just above the threshold
    anomaly_map[:, 48:] = 1.0  # at full scale
    overlay = render_overlay(image, anomaly_map, np.zeros((64, 64), np.uint8), threshold=0.6, full_scale=1.0)
    assert np.array_equal(overlay[:, :32], image[:, :32])  # below the threshold: no tint at all
    low, high = overlay[10, 40].astype(int), overlay[10, 56].astype(int)
    assert low[0] > 90
    assert low[1] > 90
    assert low[2] < 90
    assert high[0] > low[0]
    assert high[1] < 90
    # the default threshold is full_scale / 2 (callers pass full_scale = 2 * threshold)
    default = render_overlay(image, np.full((64, 64), 0.45, np.float32), np.zeros((64, 64), np.uint8), full_scale=1.0)
    assert np.array_equal(default, image)


def test_heat_rgba_is_transparent_at_or_below_the_threshold():
    heat = heat_rgba(np.array([[0.0, 0.5, 0.51, 2.0]], np.float32), threshold=0.5, full_scale=1.0)
    assert heat[0, :, 3].tolist()[:2] == [0, 0]
    assert 0 < heat[0, 2, 3] < heat[0, 3, 3]
    assert heat[0, 3, :3].tolist() == [255, 0, 0]


def test_png_round_trip():
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(encode_png(image), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, image)
