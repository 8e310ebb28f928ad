"""Plain, frozen, picklable results of the repository (never live ORM objects).

They cross Ray process boundaries and outlive the session that read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from model.names import bank_key
from storage.records import map_from_png, mask_from_png

__all__ = ["InspectionRow", "MaskRow", "BankRow", "ChatTurnRow", "ClassStats"]


@dataclass(frozen=True, slots=True)
class InspectionRow:
    """One stored inspection (the ``inspections`` table)."""

    id: int
    frame_id: str
    line_id: str
    camera_id: str
    product_class: str
    captured_at: datetime
    received_at: datetime
    scored_at: datetime
    score: float
    threshold: float
    is_anomalous: bool
    positions: tuple[str, ...]
    region_count: int
    verdict: str
    verdict_source: str
    verdict_note: str | None
    bank_version: int
    latency_ms: float
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    alert_sent_at: datetime | None
    content_sha256: str | None = None  # sha256 hex of the frame's bytes (None for rows before migration 0002)
    regions: tuple[dict, ...] = ()  # full-frame boxes {x, y, width, height, area_px, position} (empty before 0004)
    frame_width_px: int | None = None
    frame_height_px: int | None = None
    score_source: str | None = None  # "bank" | "zero-shot" | "cold-start" (None before migration 0007)
    threshold_method: str | None = None  # how the threshold was set

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> InspectionRow:
        """Build from a result row's mapping (``positions`` JSON list -> tuple)."""
        values = dict(row)
        values["positions"] = tuple(values.get("positions") or ())
        values["regions"] = tuple(values.get("regions") or ())
        values["is_anomalous"] = bool(values["is_anomalous"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class MaskRow:
    """The stored anomaly map and mask of one inspection (PNG bytes), plus the frame if it was kept."""

    inspection_id: int
    anomaly_map_png: bytes = field(repr=False)
    mask_png: bytes = field(repr=False)
    width_px: int
    height_px: int
    frame_image: bytes | None = field(default=None, repr=False)

    def anomaly_map(self) -> np.ndarray:
        """The float32 (H, W) map in [0, 1] (8-bit quantised)."""
        return map_from_png(self.anomaly_map_png)

    def mask(self) -> np.ndarray:
        """The uint8 (H, W) mask in {0, 1}."""
        return mask_from_png(self.mask_png)


@dataclass(frozen=True, slots=True)
class BankRow:
    """A registered memory-bank version."""

    id: int
    product_class: str
    version: int
    path: str
    sha256: str
    shots: int
    encoder: str
    calibration: dict[str, Any]
    created_at: datetime
    active: bool
    reference_frames: tuple[str, ...] | None = None  # frames the shots came from, when known (bank auto, cold start)

    @property
    def key(self) -> str:
        """``class@vN`` (:func:`model.names.bank_key`), the bank cache key."""
        return bank_key(self.product_class, self.version)

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> BankRow:
        """Build from a result row's mapping."""
        values = dict(row)
        values["active"] = bool(values["active"])
        values["calibration"] = dict(values.get("calibration") or {})
        refs = values.get("reference_frames")
        values["reference_frames"] = None if refs is None else tuple(str(r) for r in refs)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ChatTurnRow:
    """One operator/assistant turn about an inspection (``turn_index`` counts from 0)."""

    id: int
    inspection_id: int
    turn_index: int
    role: str
    text: str
    created_at: datetime
    source: str | None = None  # assistant turns: "llm" (the LLM's text shown) or "facts" (the facts answer)


@dataclass(frozen=True, slots=True)
class ClassStats:
    """Counts of one product class over the filtered inspections."""

    product_class: str
    total: int
    flagged: int
    mean_score: float
    mean_latency_ms: float
