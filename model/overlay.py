"""The one overlay renderer: heat where the anomaly map is above the threshold, a binary mask outlined.

Pure numpy/OpenCV, so every picture uses the same heat scale: the stream's overlays folder
(``pipeline/stream/sink.py``), the API's ``overlay.png`` and ``heat.png``, ``linesight inspect`` and the
evaluation report (``training/report.py``).

>>> import numpy as np
>>> overlay = render_overlay(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.float32), np.zeros((64, 64), np.uint8))
>>> overlay.shape
(64, 64, 3)
"""

from __future__ import annotations

import cv2
import numpy as np

from model.exceptions import ModelError

__all__ = ["render_overlay", "heat_rgba", "encode_png"]


_LOW_RGB = np.array([255, 220, 0], np.float32)  # just above the threshold: yellow
_HIGH_RGB = np.array([255, 0, 0], np.float32)  # at full scale and above: red
_MIN_ALPHA, _MAX_ALPHA = 0.35, 0.75


def heat_rgba(anomaly_map: np.ndarray, threshold: float, full_scale: float) -> np.ndarray:
    """(H, W, 4) uint8 RGBA heat: transparent where ``anomaly_map <= threshold``; above it, yellow to
    red and more opaque as the value goes from ``threshold`` to ``full_scale``.

    >>> heat_rgba(np.array([[0.1, 0.9]], np.float32), threshold=0.5, full_scale=1.0)[0, :, 3].tolist()
    [0, 171]
    """
    if not full_scale > threshold:
        raise ModelError(f"full_scale ({full_scale}) must be above the threshold ({threshold})")
    values = anomaly_map.astype(np.float32, copy=False)
    above = values > threshold
    t = np.clip((values - threshold) / (full_scale - threshold), 0.0, 1.0)[..., None]
    rgb = _LOW_RGB + (_HIGH_RGB - _LOW_RGB) * t
    alpha = np.where(above[..., None], _MIN_ALPHA + (_MAX_ALPHA - _MIN_ALPHA) * t, 0.0)
    return (np.concatenate([rgb, alpha * 255.0], axis=-1) + 0.5).astype(np.uint8)


def render_overlay(
    image_rgb: np.ndarray,
    anomaly_map: np.ndarray,
    mask: np.ndarray,
    *,
    label: str | None = None,
    full_scale: float = 1.0,
    threshold: float | None = None,
    outline_rgb: tuple[int, int, int] = (255, 0, 0),
) -> np.ndarray:
    """The image with heat drawn only where ``anomaly_map`` is above ``threshold`` and ``mask`` outlined
    in ``outline_rgb`` (red: the detector's mask; the evaluation report outlines the ground truth in green).

    Below the threshold the frame is left as it is (no tint); above it the heat goes from yellow to
    red at ``full_scale`` (:func:`heat_rgba`). ``threshold`` defaults to ``full_scale / 2`` (callers
    pass ``full_scale = 2 * threshold``). The map and mask are resized to the image. Returns uint8 RGB.
    """
    if not full_scale > 0:
        raise ModelError(f"full_scale must be > 0, got {full_scale}")
    threshold = full_scale / 2 if threshold is None else threshold
    height, width = image_rgb.shape[:2]
    values = anomaly_map.astype(np.float32, copy=False)
    if values.shape != (height, width):
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    heat = heat_rgba(values, threshold, max(full_scale, threshold * 1.001 + 1e-6)).astype(np.float32)
    alpha = heat[..., 3:] / 255.0
    blended = (image_rgb.astype(np.float32) * (1.0 - alpha) + heat[..., :3] * alpha + 0.5).astype(np.uint8)
    binary = (mask > 0).astype(np.uint8)
    if binary.shape != (height, width):
        binary = cv2.resize(binary, (width, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(blended, contours, -1, outline_rgb, max(1, width // 150))
    if label:
        cv2.putText(blended, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return blended


def encode_png(image_rgb: np.ndarray) -> bytes:
    """PNG bytes of a uint8 RGB image."""
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ModelError(f"could not encode an image of shape {image_rgb.shape} as PNG")
    return buffer.tobytes()
