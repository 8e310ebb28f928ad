import cv2
import numpy as np

from pipeline.overlay import encode_png, render_overlay


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


def test_heat_follows_the_map():
    image = np.zeros((64, 64, 3), np.uint8)
    anomaly_map = np.zeros((64, 64), np.float32)
    anomaly_map[:, 32:] = 1.0
    overlay = render_overlay(image, anomaly_map, np.zeros((64, 64), np.uint8))
    # JET: 0 -> blue, 1 -> red
    assert overlay[10, 50, 0] > overlay[10, 50, 2]
    assert overlay[10, 10, 2] > overlay[10, 10, 0]


def test_png_round_trip():
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(encode_png(image), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, image)
