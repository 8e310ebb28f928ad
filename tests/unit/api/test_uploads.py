"""Upload checks: content type, magic bytes, size, dimensions read from the header, corrupt data."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from linesight.api.errors import ApiError
from linesight.api.uploads import decode_upload, header_size_px
from tests.unit.api.helpers import jpeg_bytes, png_bytes

LIMIT = 100_000


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG signature + IHDR that claims a size, with no pixel data (never decoded)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _error(data, content_type="image/png", name="x.png"):
    with pytest.raises(ApiError) as info:
        decode_upload(data, content_type, name, max_bytes=LIMIT)
    return info.value


def test_png_and_jpeg_decode_to_rgb():
    image = np.zeros((20, 30, 3), np.uint8)
    image[..., 0] = 200  # red
    for data, kind in ((png_bytes(image), "image/png"), (jpeg_bytes(image), "image/jpeg")):
        decoded = decode_upload(data, kind, "a", max_bytes=LIMIT)
        assert decoded.shape == (20, 30, 3)
        assert decoded[..., 0].mean() > 150
        assert decoded[..., 2].mean() < 50
    assert header_size_px(jpeg_bytes(np.zeros((40, 70, 3), np.uint8))) == (70, 40)


def test_wrong_content_type_is_415_naming_it():
    error = _error(png_bytes(np.zeros((20, 20, 3), np.uint8)), "text/plain")
    assert error.status_code == 415
    assert "'text/plain'" in str(error)


def test_bytes_that_are_not_the_declared_format_are_refused():
    assert _error(b"GIF89a" + b"\0" * 100).status_code == 415
    error = _error(jpeg_bytes(np.zeros((20, 20, 3), np.uint8)), "image/png")
    assert error.status_code == 415
    assert "declared 'image/png' but its bytes are JPEG" in str(error)


def test_too_large_is_413_naming_the_limit():
    error = _error(b"\x89PNG\r\n\x1a\n" + b"\0" * LIMIT)
    assert error.status_code == 413
    assert str(LIMIT) in str(error)


@pytest.mark.parametrize(("width", "height", "status"),
                         [(10, 100, 400), (100, 15, 400), (8193, 100, 400), (100_000, 100_000, 413)])
def test_dimensions_out_of_range_are_refused_before_decoding(width, height, status):
    error = _error(_png_header_claiming(width, height))
    assert error.status_code == status  # 413: more than max_frame_pixels
    assert f"{width}x{height} px" in str(error)


def test_corrupt_pixel_data_is_400():
    error = _error(_png_header_claiming(64, 64))
    assert error.status_code == 400
    assert "corrupt" in str(error)


def test_empty_file_is_400():
    assert _error(b"").status_code == 400
