"""Checks on uploaded images before anything decodes them.

An upload must declare ``image/png`` or ``image/jpeg``, start with that format's magic bytes, be
at most ``max_bytes`` long, and have a width and height in 16..8192 px, read from the file's
header *before* decoding (no decompression bombs). Each failure is an :class:`ApiError` naming
the file and the bad value.

>>> import numpy as np, cv2
>>> png = cv2.imencode(".png", np.zeros((20, 30, 3), np.uint8))[1].tobytes()
>>> header_size_px(png)
(30, 20)
>>> decode_upload(png, "image/png", "a.png", max_bytes=10_000).shape
(20, 30, 3)
"""

from __future__ import annotations

import struct

import numpy as np

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
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG start-of-frame markers carry the size (not DHT C4, JPG C8, DAC CC)
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff_format(data: bytes) -> str | None:
    """``"png"``, ``"jpeg"`` or ``None`` from the first bytes."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    return None


def _jpeg_size_px(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            index += 2
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if marker in _SOF_MARKERS:
            if index + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        if length < 2:
            return None
        index += 2 + length
    return None


def header_size_px(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or a JPEG SOF header, or ``None`` when it cannot be read."""
    fmt = sniff_format(data)
    if fmt == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if fmt == "jpeg":
        return _jpeg_size_px(data)
    return None


def decode_upload(data: bytes, content_type: str | None, filename: str | None, *, max_bytes: int) -> np.ndarray:
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
    if actual is None:
        raise ApiError(415, f"file {name} is not a PNG or JPEG (starts with {data[:8]!r})")
    if actual != ALLOWED_TYPES[declared]:
        raise ApiError(415, f"file {name} is declared {declared!r} but its bytes are {actual.upper()}")
    size = header_size_px(data)
    if size is None:
        raise ApiError(400, f"file {name}: cannot read the image size from its {actual.upper()} header")
    width, height = size
    if not (MIN_SIDE_PX <= width <= MAX_SIDE_PX and MIN_SIDE_PX <= height <= MAX_SIDE_PX):
        raise ApiError(
            400, f"file {name} is {width}x{height} px; each side must be {MIN_SIDE_PX}..{MAX_SIDE_PX} px"
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ApiError(400, f"file {name}: the {actual.upper()} data is corrupt and cannot be decoded")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
