"""Stored inspections for API tests: synthetic rows (fast) or frames really scored by the detector."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np

from storage.records import InspectionRecord, png_from_map, png_from_mask

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
TOKEN = "test-token-0123456789"


def png_bytes(image_rgb: np.ndarray) -> bytes:
    """PNG of a uint8 RGB image."""
    return cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def jpeg_bytes(image_rgb: np.ndarray) -> bytes:
    """JPEG of a uint8 RGB image."""
    return cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def make_record(index: int, *, captured_at: datetime | None = None, **overrides: Any) -> InspectionRecord:
    """Frame ``f-<index>``: line-<i%2>, cam-<i%3>, brick/washer alternating, every third flagged."""
    rng = np.random.default_rng(index)
    heat = rng.random((32, 32), dtype=np.float32) * 0.4
    flagged = index % 3 == 0
    if flagged:
        heat[4:12, 20:28] = 0.95
    frame = np.full((64, 64, 3), 120 + index % 50, np.uint8)
    at = captured_at or T0 + timedelta(seconds=index)
    values: dict[str, Any] = {
        "frame_id": f"f-{index}",
        "line_id": f"line-{index % 2}",
        "camera_id": f"cam-{index % 3}",
        "product_class": ("brick", "washer")[index % 2],
        "captured_at": at,
        "received_at": at + timedelta(milliseconds=5),
        "scored_at": at + timedelta(milliseconds=40),
        "score": 0.95 if flagged else 0.3,
        "threshold": 0.6,
        "is_anomalous": flagged,
        "positions": ["top right"] if flagged else [],
        "region_count": 1 if flagged else 0,
        "verdict": "Yes: an anomaly at the top right." if flagged else "No, there is no anomaly in the image.",
        "bank_version": 1,
        "latency_ms": 40.0,
        "anomaly_map_png": png_from_map(heat),
        "mask_png": png_from_mask(heat > 0.6),
        "frame_image": jpeg_bytes(frame),
    }
    values.update(overrides)
    return InspectionRecord(**values)


def seed(repository: Any, count: int, **overrides: Any) -> list[Any]:
    """Store ``count`` records; returns their rows, oldest first."""
    repository.upsert_inspections([make_record(i, **overrides) for i in range(count)])
    return sorted(repository.iter_history(), key=lambda row: row.id)


def scored_records(encoder: Any, count: int, *, seed_value: int = 0, now: datetime | None = None) -> list[InspectionRecord]:
    """``count`` synthetic-line frames really scored by the detector (realistic overlays for screenshots).

    One-shot banks without rotations and one batch per class keep this to a few seconds.
    """
    from model.detector import Detector
    from model.fewshot import build_bank
    from training.synthetic import SyntheticLine, normal_images

    classes = ("brick", "washer")
    banks = {c: build_bank(encoder, normal_images(c, 1, seed=1), c, 1, rotations=False) for c in classes}
    detector = Detector(encoder)
    line = SyntheticLine(product_classes=classes, defect_rate=0.35, seed=seed_value)
    frames = [line.next_frame() for _ in range(count)]
    results: dict[int, Any] = {}
    for cls in classes:
        rows = [i for i, f in enumerate(frames) if f.product_class == cls]
        if rows:
            scored = detector.score_batch([frames[i].image for i in rows], banks[cls])
            results.update(zip(rows, scored, strict=True))
    start = (now or datetime.now(UTC)) - timedelta(seconds=count)
    records = []
    for index, frame in enumerate(frames):
        result = results[index]
        at = start + timedelta(seconds=index)
        records.append(InspectionRecord(
            frame_id=f"s-{seed_value}-{index}", line_id=f"line-{1 + index % 2}", camera_id=f"cam-{1 + index % 2}",
            product_class=frame.product_class, captured_at=at, received_at=at, scored_at=at + timedelta(milliseconds=60),
            score=result.score, threshold=result.threshold, is_anomalous=result.is_anomalous,
            positions=list(result.positions), region_count=result.region_count, verdict=result.verdict,
            bank_version=1, latency_ms=60.0 + index % 7, anomaly_map_png=png_from_map(result.anomaly_map),
            mask_png=png_from_mask(result.mask), frame_image=jpeg_bytes(frame.image),
        ))
    return records
