"""The frame message: key = line id, value = JPEG/PNG bytes, identity and context in headers.

Headers (UTF-8 values): ``frame_id``, ``line_id``, ``camera_id``, ``product_class``, ``captured_at``
(ISO 8601 with a UTC offset). :func:`parse_record` turns a consumed record into a :class:`Frame`
(decoded uint8 RGB image) or a :class:`BadFrame` with a reason code; bad frames are data for the
dead-letter topic, never an exception.

>>> from datetime import UTC, datetime
>>> import numpy as np
>>> headers = FrameHeaders(frame_id="line-1-000001", line_id="line-1", camera_id="cam-1",
...                        product_class="brick", captured_at=datetime(2024, 5, 1, tzinfo=UTC))
>>> key, value, kafka_headers = frame_message(headers, encode_image(np.zeros((32, 32, 3), np.uint8)))
>>> key, kafka_headers[-1]
(b'line-1', ('captured_at', b'2024-05-01T00:00:00+00:00'))
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from connectors.exceptions import FrameError, ImageHeaderError
from connectors.image_header import ImageHeader, read_image_header
from model.names import check_class_name

__all__ = [
    "BAD_FRAME_REASONS",
    "DEFAULT_MAX_CAPTURE_AGE_S",
    "DEFAULT_MAX_CAPTURE_SKEW_S",
    "DEFAULT_MAX_FRAME_PIXELS",
    "HEADER_NAMES",
    "MAX_IMAGE_SIDE_PX",
    "MIN_IMAGE_SIDE_PX",
    "BadFrame",
    "Frame",
    "FrameHeaders",
    "decode_image",
    "encode_image",
    "frame_message",
    "parse_record",
]

MIN_IMAGE_SIDE_PX = 16  # smaller frames carry nothing to inspect
MAX_IMAGE_SIDE_PX = 8192  # larger ones are a misconfigured camera (and a memory risk)
HEADER_NAMES = ("frame_id", "line_id", "camera_id", "product_class", "captured_at")
BAD_FRAME_REASONS = (
    "oversize", "missing_header", "invalid_header", "not_an_image", "undecodable", "too_many_pixels",
    "bad_image_shape", "unknown_class",
)
# Defaults of the Settings fields of the same names (tests/unit/connectors check they agree).
DEFAULT_MAX_FRAME_PIXELS = 20_000_000  # a 20 MP industrial camera (5472x3648 = 19.96 MP) fits
DEFAULT_MAX_CAPTURE_AGE_S = 7 * 24 * 3600.0  # a week of backlog replay; older is a wrong clock
DEFAULT_MAX_CAPTURE_SKEW_S = 300.0  # camera clocks ahead of the ingest host by at most 5 min

_FrameId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
_Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
_ClassName = Annotated[str, AfterValidator(check_class_name)]  # one rule: model.names


def _tz_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("captured_at needs a timezone (e.g. +00:00)")
    return value


class FrameHeaders(BaseModel):
    """Identity and context of one frame, carried as Kafka headers.

    >>> FrameHeaders(frame_id="f1", line_id="line-1", camera_id="cam-1", product_class="brick",
    ...              captured_at="2024-05-01T12:00:00+00:00").captured_at.year
    2024
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    frame_id: _FrameId
    line_id: _Name
    camera_id: _Name
    product_class: _ClassName
    captured_at: Annotated[datetime, AfterValidator(_tz_aware)]

    def to_kafka_headers(self) -> list[tuple[str, bytes]]:
        """``[(name, utf-8 value), ...]`` in :data:`HEADER_NAMES` order."""
        return [
            ("frame_id", self.frame_id.encode()),
            ("line_id", self.line_id.encode()),
            ("camera_id", self.camera_id.encode()),
            ("product_class", self.product_class.encode()),
            ("captured_at", self.captured_at.isoformat().encode()),
        ]


@dataclass(frozen=True)
class Frame:
    """A valid, decoded frame and where it came from."""

    headers: FrameHeaders
    image: np.ndarray  # (H, W, 3) uint8 RGB
    topic: str
    partition: int
    offset: int
    size_bytes: int  # encoded size as received


@dataclass(frozen=True)
class BadFrame:
    """A record that cannot be inspected: ``reason`` is one of :data:`BAD_FRAME_REASONS`."""

    reason: str
    detail: str
    record: Any  # the ConsumerRecord as received (re-published to the dead-letter topic)


def encode_image(image_rgb: np.ndarray, fmt: Literal["jpg", "png"] = "jpg", quality: int = 90) -> bytes:
    """Encode a uint8 RGB (H, W, 3) or grayscale (H, W) image as JPEG or PNG bytes.

    >>> encode_image(np.zeros((16, 16, 3), np.uint8), fmt="png")[:4]
    b'\\x89PNG'
    """
    if fmt not in ("jpg", "png"):
        raise FrameError(f"image format must be 'jpg' or 'png', got {fmt!r}")
    if not 1 <= quality <= 100:
        raise FrameError(f"JPEG quality must be in 1..100, got {quality}")
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8:
        raise FrameError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim != 2:
        raise FrameError(f"images must be (H, W, 3) RGB or (H, W) grayscale, got shape {image.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buffer = cv2.imencode(f".{fmt}", image, params)
    if not ok:
        raise FrameError(f"OpenCV could not encode an image of shape {image.shape} as {fmt}")
    return buffer.tobytes()


def frame_message(headers: FrameHeaders, image_bytes: bytes) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``(key, value, kafka_headers)`` of a frame: key = line id (per-line order within a partition)."""
    if not image_bytes:
        raise FrameError(f"frame {headers.frame_id!r} has an empty image")
    return headers.line_id.encode(), bytes(image_bytes), headers.to_kafka_headers()


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> np.ndarray | None:
    """Decode JPEG/PNG/BMP bytes to uint8 RGB (H, W, 3); grayscale becomes 3 channels.

    The size is read from the header first: bytes that are no PNG/JPEG/BMP, whose header is
    corrupt, or that declare more than ``max_pixels`` return None without being decoded (so do
    bytes OpenCV cannot decode). Other channel counts or depths come back unchanged so
    :func:`parse_record` can name them; it also says *why* a frame was refused.
    """
    if not data:
        return None
    try:
        header = read_image_header(data)
    except ImageHeaderError:
        return None
    if header is None or header.pixels > max_pixels:
        return None
    return _decode(data)


def _decode(data: bytes) -> np.ndarray | None:
    """OpenCV decode of bytes whose header was already checked."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.dtype == np.uint8 else image
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def parse_record(
    record: Any,
    *,
    max_frame_bytes: int,
    known_classes: Collection[str] | None = None,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    max_capture_age_s: float = DEFAULT_MAX_CAPTURE_AGE_S,
    max_capture_skew_s: float = DEFAULT_MAX_CAPTURE_SKEW_S,
    now: datetime | None = None,
) -> Frame | BadFrame:
    """Validate and decode a consumed frame record; never raises for bad input.

    Checks, in order: size (``oversize``), headers (``missing_header``, ``invalid_header``,
    including a ``captured_at`` more than ``max_capture_age_s`` before ``now`` or more than
    ``max_capture_skew_s`` after it), product class (``unknown_class``, only when
    ``known_classes`` is given), then the image *header* before any decoding: no PNG/JPEG/BMP
    (``not_an_image``), a truncated or corrupt header (``undecodable``), more than
    ``max_frame_pixels`` (``too_many_pixels``), sides outside 16..8192 px (``bad_image_shape``);
    only then decoding (``undecodable``) and the decoded shape (``bad_image_shape``).

    >>> class R: topic, partition, offset, key, value, headers = "t", 0, 7, b"l", b"", []
    >>> parse_record(R(), max_frame_bytes=1024).reason
    'missing_header'
    """
    value = record.value if record.value is not None else b""
    size_bytes = len(value)
    if size_bytes > max_frame_bytes:
        return BadFrame("oversize", f"frame is {size_bytes} bytes, the limit is {max_frame_bytes}", record)

    headers_or_bad = _parse_headers(record)
    if isinstance(headers_or_bad, BadFrame):
        return headers_or_bad
    headers = headers_or_bad
    skew = _capture_time_problem(headers.captured_at, now or datetime.now(UTC), max_capture_age_s, max_capture_skew_s)
    if skew:
        return BadFrame("invalid_header", skew, record)
    if known_classes is not None and headers.product_class not in known_classes:
        known = ", ".join(sorted(known_classes)) or "none"
        return BadFrame(
            "unknown_class", f"product_class {headers.product_class!r} has no active bank (known: {known})", record
        )

    data = bytes(value)
    try:
        header = read_image_header(data)
    except ImageHeaderError as exc:
        return BadFrame("undecodable", f"{size_bytes} bytes: {exc}", record)
    if header is None:
        detail = "empty value" if not data else f"{size_bytes} bytes that are no PNG, JPEG or BMP (start {data[:8]!r})"
        return BadFrame("not_an_image", detail, record)
    if header.pixels > max_frame_pixels:
        return BadFrame(
            "too_many_pixels",
            f"{header.format.upper()} header declares {header.size_text} in {size_bytes} bytes; the limit is "
            f"{max_frame_pixels} px (max_frame_pixels); not decoded",
            record,
        )
    problem = _side_problem(header)
    if problem:
        return BadFrame("bad_image_shape", problem, record)
    image = _decode(data)
    if image is None:
        return BadFrame(
            "undecodable", f"{size_bytes}-byte {header.format.upper()} of {header.size_text} that OpenCV cannot decode",
            record,
        )
    problem = _shape_problem(image)
    if problem:
        return BadFrame("bad_image_shape", problem, record)
    return Frame(headers, image, record.topic, record.partition, record.offset, size_bytes)


def _parse_headers(record: Any) -> FrameHeaders | BadFrame:
    raw: dict[str, bytes | None] = {}
    for name, value in record.headers or []:
        raw[name] = value
    texts: dict[str, str] = {}
    for name in HEADER_NAMES:
        value = raw.get(name)
        if value is None:
            return BadFrame("missing_header", f"header {name!r} is missing", record)
        try:
            texts[name] = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return BadFrame("invalid_header", f"header {name!r} is not UTF-8: {bytes(value)[:64]!r}", record)
    try:
        return FrameHeaders(**texts)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "?"
        return BadFrame(
            "invalid_header", f"header {name!r} has invalid value {texts.get(name, '')[:140]!r}: {error['msg']}", record
        )


def _capture_time_problem(captured_at: datetime, now: datetime, max_age_s: float, max_skew_s: float) -> str | None:
    """Why ``captured_at`` is outside [now - max_age_s, now + max_skew_s], or None."""
    try:
        ahead_s = (captured_at - now).total_seconds()
    except OverflowError:  # e.g. year 1 with a far offset
        return f"header 'captured_at' has value {captured_at.isoformat()!r}, which is out of range"
    if ahead_s > max_skew_s:
        return (
            f"header 'captured_at' has value {captured_at.isoformat()!r}, {ahead_s:.0f} s after the ingest clock "
            f"({now.isoformat(timespec='seconds')}); at most {max_skew_s:g} s ahead is accepted (max_capture_skew_s)"
        )
    if -ahead_s > max_age_s:
        return (
            f"header 'captured_at' has value {captured_at.isoformat()!r}, {-ahead_s:.0f} s before the ingest clock "
            f"({now.isoformat(timespec='seconds')}); at most {max_age_s:g} s old is accepted (max_capture_age_s)"
        )
    return None


def _side_problem(header: ImageHeader) -> str | None:
    """Sides outside MIN..MAX_IMAGE_SIDE_PX, from the header (before decoding)."""
    width, height = header.width_px, header.height_px
    if min(height, width) < MIN_IMAGE_SIDE_PX:
        return f"image {width}x{height} px is smaller than {MIN_IMAGE_SIDE_PX} px"
    if max(height, width) > MAX_IMAGE_SIDE_PX:
        return f"image {width}x{height} px is larger than {MAX_IMAGE_SIDE_PX} px"
    return None


def _shape_problem(image: np.ndarray) -> str | None:
    if image.dtype != np.uint8:
        return f"expected 8-bit pixels, got {image.dtype} with shape {image.shape}"
    if image.ndim != 3 or image.shape[2] != 3:
        channels = image.shape[2] if image.ndim == 3 else 1
        return f"expected 3 colour channels, got {channels} (shape {image.shape})"
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE_PX:
        return f"image {width}x{height} px is smaller than {MIN_IMAGE_SIDE_PX} px"
    if max(height, width) > MAX_IMAGE_SIDE_PX:
        return f"image {width}x{height} px is larger than {MAX_IMAGE_SIDE_PX} px"
    return None
