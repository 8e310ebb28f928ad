"""What the stream writes for one frame (:class:`InspectionRecord`) and the PNG codecs for maps and masks.

Anomaly maps (float32 in [0, 1]) are stored as 8-bit grey PNGs (quantisation error <= 1/510);
binary masks as 0/255 grey PNGs (viewable as they are).

>>> import numpy as np
>>> heat = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
>>> bool(np.abs(map_from_png(png_from_map(heat)) - heat).max() <= 1 / 510 + 1e-6)
True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np

from storage.exceptions import InvalidRecordError
from storage.models import SCORE_SOURCES, VERDICT_SOURCES

__all__ = [
    "InspectionRecord",
    "png_from_map",
    "png_from_mask",
    "map_from_png",
    "mask_from_png",
    "png_size_px",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, kw_only=True, slots=True)
class InspectionRecord:
    """Everything stored for one scored frame; validated on construction (InvalidRecordError naming the field).

    ``frame_id`` is the idempotency key: writing the same record twice stores it once.
    """

    frame_id: str
    line_id: str
    camera_id: str
    product_class: str
    captured_at: datetime  # tz-aware; when the camera took the frame
    received_at: datetime  # tz-aware; when the stream read it from Kafka
    scored_at: datetime  # tz-aware; when the detector finished
    score: float  # image score max(M)
    threshold: float  # the class's calibrated threshold used for the decision
    is_anomalous: bool
    positions: tuple[str, ...]  # 3x3 names, largest region first (a list is accepted)
    region_count: int
    verdict: str
    bank_version: int
    latency_ms: float  # capture -> scored/stored
    anomaly_map_png: bytes  # png_from_map(M)
    mask_png: bytes  # png_from_mask(mask)
    verdict_source: str = "template"  # "template" | "llm"
    verdict_note: str | None = None  # e.g. why an LLM verdict was rejected
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    frame_image: bytes | None = field(default=None, repr=False)  # the encoded frame as received
    content_sha256: str | None = None  # sha256 hex of the frame's bytes: tells a redelivery from a reused frame_id
    regions: tuple[dict, ...] = ()  # full-frame boxes {x, y, width, height, area_px, position}, largest first
    frame_width_px: int | None = None  # the scored frame's size (the boxes' coordinate system)
    frame_height_px: int | None = None
    score_source: str | None = None  # "bank" | "zero-shot" | "cold-start" (storage.models.SCORE_SOURCES)
    threshold_method: str | None = None  # how the threshold was set, e.g. "cold-start median+3MAD of 64"

    def __post_init__(self) -> None:
        for name in ("frame_id", "line_id", "camera_id", "product_class"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidRecordError(f"{name} must be a non-empty string, got {value!r}")
        for name in ("captured_at", "received_at", "scored_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
                raise InvalidRecordError(
                    f"{name} of frame {self.frame_id!r} must be a timezone-aware datetime, got {value!r}"
                )
        if self.verdict_source not in VERDICT_SOURCES:
            raise InvalidRecordError(
                f"verdict_source of frame {self.frame_id!r} must be one of {VERDICT_SOURCES}, got {self.verdict_source!r}"
            )
        if self.score_source is not None and self.score_source not in SCORE_SOURCES:
            raise InvalidRecordError(
                f"score_source of frame {self.frame_id!r} must be one of {SCORE_SOURCES}, got {self.score_source!r}"
            )
        if self.threshold_method is not None and len(self.threshold_method) > 64:
            object.__setattr__(self, "threshold_method", self.threshold_method[:64])
        for name in ("anomaly_map_png", "mask_png"):
            value = getattr(self, name)
            if not isinstance(value, bytes | bytearray) or not bytes(value[:8]) == _PNG_SIGNATURE:
                raise InvalidRecordError(
                    f"{name} of frame {self.frame_id!r} is not PNG bytes (use png_from_map/png_from_mask)"
                )
        if not isinstance(self.positions, tuple):
            object.__setattr__(self, "positions", tuple(self.positions))
        if not isinstance(self.regions, tuple):
            object.__setattr__(self, "regions", tuple(self.regions))


# Every frame's map and mask are encoded in the sink, so the encoder settings are measured (224 x 224,
# OpenCV 5.1, lossless either way): zlib level 1 (~3x faster than OpenCV's default 3); one fixed PNG
# filter and run-length deflate instead of libpng's adaptive filter choice: a smooth map 0.86 -> 0.55 ms
# and 16.9 -> 15.4 KB with the "up" filter, a binary mask 0.28 -> 0.06 ms and 1.4 -> 0.7 KB with none.
# py-spy of the sink in `make bench`'s throughput run: PNG encoding was 79 % of its busy time.
_MAP_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
            cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
_MASK_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
             cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def _encode_png(gray_u8: np.ndarray, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(gray_u8), params)
    if not ok:
        raise InvalidRecordError(f"OpenCV could not encode a {gray_u8.shape} PNG")
    return buffer.tobytes()


def _decode_png(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE) if png else None
    if image is None:
        raise InvalidRecordError(f"not a decodable PNG ({len(png)} bytes, starts {bytes(png[:8])!r})")
    return image


def _as_2d(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0:
        raise InvalidRecordError(f"{what} must be a non-empty 2-D array (H, W), got shape {array.shape}")
    return array


def png_from_map(map_float01: np.ndarray) -> bytes:
    """8-bit grey PNG of a float anomaly map in [0, 1] (values outside are clipped, NaN refused).

    >>> png_from_map(np.zeros((4, 4), np.float32))[:4]
    b'\\x89PNG'
    """
    heat = _as_2d(map_float01, "anomaly map").astype(np.float32, copy=False)
    if not np.isfinite(heat).all():
        raise InvalidRecordError(f"anomaly map of shape {heat.shape} contains NaN or infinite values")
    return _encode_png((np.clip(heat, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), _MAP_PNG)


def png_from_mask(mask: np.ndarray) -> bytes:
    """Binary PNG (0/255) of a mask; any non-zero (or True) pixel is foreground.

    >>> mask_from_png(png_from_mask(np.eye(3, dtype=np.uint8))).tolist()
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    """
    return _encode_png(np.where(_as_2d(mask, "mask") != 0, 255, 0).astype(np.uint8), _MASK_PNG)


def map_from_png(png: bytes) -> np.ndarray:
    """The float32 (H, W) map in [0, 1] stored by :func:`png_from_map`."""
    return _decode_png(png).astype(np.float32) / np.float32(255.0)


def mask_from_png(png: bytes) -> np.ndarray:
    """The uint8 (H, W) mask in {0, 1} stored by :func:`png_from_mask`."""
    return (_decode_png(png) >= 128).astype(np.uint8)


def png_size_px(png: bytes) -> tuple[int, int]:
    """(width, height) read from a PNG header without decoding the pixels.

    >>> png_size_px(png_from_mask(np.zeros((2, 5), np.uint8)))
    (5, 2)
    """
    if len(png) < 24 or png[:8] != _PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise InvalidRecordError(f"not a PNG header ({len(png)} bytes, starts {bytes(png[:8])!r})")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)
