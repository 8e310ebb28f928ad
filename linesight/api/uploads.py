"""Checks on uploaded images before anything decodes them.

An upload must declare ``image/png`` or ``image/jpeg``, start with that format's magic bytes, be
at most ``max_bytes`` long, have a width and height in 16..8192 px and at most ``max_pixels``
pixels (``Settings.max_frame_pixels``), all read from the file's header *before* decoding
(:mod:`connectors.image_header`: no decompression bombs). Each failure is an :class:`ApiError`
naming the file and the bad value: 415 wrong type, 413 too many bytes or pixels, 400 unreadable.

>>> import numpy as np, cv2
>>> png = cv2.imencode(".png", np.zeros((20, 30, 3), np.uint8))[1].tobytes()
>>> header_size_px(png)
(30, 20)
>>> decode_upload(png, "image/png", "a.png", max_bytes=10_000).shape
(20, 30, 3)
"""

from __future__ import annotations

import numpy as np

from connectors.exceptions import ImageHeaderError
from connectors.image_header import read_image_header, sniff_format
from connectors.schema import DEFAULT_MAX_FRAME_PIXELS
from linesight.api.errors import ApiError

__all__ = [
    "MIN_SIDE_PX",
    "MAX_SIDE_PX",
    "ALLOWED_TYPES",
    "sniff_format",
    "header_size_px",
    "decode_upload",
]

MIN_SIDE_PX = 16
MAX_SIDE_PX = 8192
ALLOWED_TYPES = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/pjpeg": "jpeg"}


def header_size_px(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or a JPEG SOF header, or ``None`` when it cannot be read."""
    try:
        header = read_image_header(data)
    except ImageHeaderError:
        return None
    return None if header is None else (header.width_px, header.height_px)


def decode_upload(
    data: bytes, content_type: str | None, filename: str | None, *, max_bytes: int,
    max_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
) -> np.ndarray:
    """uint8 RGB (H, W, 3) of an uploaded PNG/JPEG after every check; :class:`ApiError` naming the problem."""
    import cv2

    name = repr(filename or "upload")
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in ALLOWED_TYPES:
        raise ApiError(415, f"file {name}: content type {declared or 'none'!r} is not image/png or image/jpeg")
    if len(data) > max_bytes:
        raise ApiError(413, f"file {name} is {len(data)} bytes; the limit is {max_bytes} bytes (max_frame_bytes)")
    if not data:
        raise ApiError(400, f"file {name} is empty")
    actual = sniff_format(data)
    if actual not in ("png", "jpeg"):
        raise ApiError(415, f"file {name} is not a PNG or JPEG (starts with {data[:8]!r})")
    if actual != ALLOWED_TYPES[declared]:
        raise ApiError(415, f"file {name} is declared {declared!r} but its bytes are {actual.upper()}")
    try:
        header = read_image_header(data)
    except ImageHeaderError as exc:
        raise ApiError(400, f"file {name}: cannot read the image size from its {actual.upper()} header: {exc}") from None
    if header is None:  # cannot happen after the magic-byte check; refuse rather than decode
        raise ApiError(415, f"file {name} is not a PNG or JPEG")
    if header.pixels > max_pixels:
        raise ApiError(
            413, f"file {name} declares {header.size_text}; the limit is {max_pixels} px (max_frame_pixels)"
        )
    width, height = header.width_px, header.height_px
    if not (MIN_SIDE_PX <= width <= MAX_SIDE_PX and MIN_SIDE_PX <= height <= MAX_SIDE_PX):
        raise ApiError(
            400, f"file {name} is {width}x{height} px; each side must be {MIN_SIDE_PX}..{MAX_SIDE_PX} px"
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ApiError(400, f"file {name}: the {actual.upper()} data is corrupt and cannot be decoded")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
