"""Pictures for people: the anomaly map as a heat overlay with the binary mask outlined.

>>> import numpy as np
>>> overlay = render_overlay(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.float32), np.zeros((64, 64), np.uint8))
>>> overlay.shape
(64, 64, 3)
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["render_overlay", "encode_png"]


def render_overlay(
    image_rgb: np.ndarray,
    anomaly_map: np.ndarray,
    mask: np.ndarray,
    *,
    alpha: float = 0.45,
    label: str | None = None,
    full_scale: float = 1.0,
) -> np.ndarray:
    """Blend a JET heat map of ``anomaly_map`` over the image and outline ``mask`` in red.

    ``full_scale`` is the map value shown as full red (pass ``2 * threshold`` so that the decision
    threshold sits mid-scale, green). The map and mask are resized to the image. Returns uint8 RGB.
    """
    if not full_scale > 0:
        raise ValueError(f"full_scale must be > 0, got {full_scale}")
    height, width = image_rgb.shape[:2]
    heat = np.clip(anomaly_map / full_scale, 0.0, 1.0).astype(np.float32)
    if heat.shape != (height, width):
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    heat_rgb = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(image_rgb, 1.0 - alpha, heat_rgb, alpha, 0.0)
    binary = (mask > 0).astype(np.uint8)
    if binary.shape != (height, width):
        binary = cv2.resize(binary, (width, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(blended, contours, -1, (255, 0, 0), max(1, width // 150))
    if label:
        cv2.putText(blended, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return blended


def encode_png(image_rgb: np.ndarray) -> bytes:
    """PNG bytes of a uint8 RGB image."""
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode an image of shape {image_rgb.shape} as PNG")
    return buffer.tobytes()
