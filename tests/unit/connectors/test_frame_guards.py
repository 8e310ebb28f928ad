"""parse_record refuses bombs, oversized sizes, corrupt headers and odd capture times before decoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

import connectors.schema as schema
from connectors.schema import BadFrame, Frame, decode_image, encode_image, parse_record
from tests.unit.connectors.bombs import jpeg_with_forged_sof, png_bomb, png_with_forged_ihdr
from tests.unit.connectors.test_schema import Record, make_headers

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def record(value: bytes, captured_at: datetime | None = None) -> Record:
    headers = make_headers(captured_at=captured_at or NOW - timedelta(seconds=2)).to_kafka_headers()
    return Record(value=value, headers=headers)


@pytest.fixture
def no_decoding(monkeypatch):
    """cv2.imdecode fails the test if anything calls it."""
    calls: list[int] = []

    def refuse(buffer, flags):  # noqa: ARG001
        calls.append(len(buffer))
        raise AssertionError(f"cv2.imdecode was called on {len(buffer)} bytes")

    monkeypatch.setattr(schema.cv2, "imdecode", refuse)
    return calls


@pytest.mark.parametrize(
    ("make", "declared"),
    [
        (png_bomb, "20000x20000 px (400.0 MP)"),
        (lambda: jpeg_with_forged_sof(20_000, 20_000), "20000x20000 px (400.0 MP)"),
        (lambda: png_with_forged_ihdr(8192, 8192), "8192x8192 px (67.1 MP)"),
    ],
)
def test_decompression_bombs_are_refused_without_decoding(make, declared, no_decoding):
    data = make()
    bad = parse_record(record(data), max_frame_bytes=1 << 20, now=NOW)
    assert isinstance(bad, BadFrame)
    assert bad.reason == "too_many_pixels"
    assert declared in bad.detail
    assert "20000000 px (max_frame_pixels)" in bad.detail
    assert f"in {len(data)} bytes" in bad.detail
    assert decode_image(data) is None  # the public decoder applies the same guard
    assert no_decoding == []


def test_the_pixel_limit_is_a_parameter(no_decoding):
    data = png_with_forged_ihdr(100, 100)
    bad = parse_record(record(data), max_frame_bytes=1 << 20, max_frame_pixels=9_999, now=NOW)
    assert bad.reason == "too_many_pixels"
    assert "100x100 px" in bad.detail
    assert "limit is 9999 px" in bad.detail
    assert no_decoding == []


def test_a_frame_at_the_limit_is_decoded():
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)
    frame = parse_record(record(encode_image(image, "png")), max_frame_bytes=1 << 20, max_frame_pixels=2000, now=NOW)
    assert isinstance(frame, Frame)
    assert np.array_equal(frame.image, image)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png_with_forged_ihdr(32, 32)[:30], "truncated before the end of its IHDR"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "IHDR"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "segment 0xE0 at byte 2 declares 16 bytes"),
        (b"\xff\xd8\xff\xe0\x00\x04ab", "ends before a start-of-frame"),
        (jpeg_with_forged_sof(0, 50), "size of 0x50 px"),
    ],
)
def test_corrupt_or_truncated_headers_are_undecodable(data, expected, no_decoding):
    bad = parse_record(record(data), max_frame_bytes=1 << 20, now=NOW)
    assert bad.reason == "undecodable"
    assert expected in bad.detail
    assert no_decoding == []


def test_a_valid_header_with_corrupt_pixels_is_undecodable():
    data = bytearray(encode_image(np.full((32, 32, 3), 80, np.uint8), "png"))
    idat = data.find(b"IDAT")
    data[idat + 4 : idat + 30] = b"\xff" * 26  # compressed stream destroyed, IHDR intact
    bad = parse_record(record(bytes(data)), max_frame_bytes=1 << 20, now=NOW)
    assert bad.reason == "undecodable"
    assert "32x32 px" in bad.detail


def test_sides_are_checked_from_the_header_before_decoding(no_decoding):
    wide = png_with_forged_ihdr(9000, 16)  # 0.14 MP: under the pixel limit, but a side over 8192
    bad = parse_record(record(wide), max_frame_bytes=1 << 20, now=NOW)
    assert bad.reason == "bad_image_shape"
    assert "9000x16 px is larger than 8192 px" in bad.detail
    assert no_decoding == []


@pytest.mark.parametrize(
    ("captured_at", "expected"),
    [
        (datetime(9999, 12, 31, tzinfo=UTC), "max_capture_skew_s"),
        (datetime(1, 1, 1, tzinfo=UTC), "max_capture_age_s"),
        (NOW + timedelta(seconds=301), "301 s after the ingest clock"),
        (NOW - timedelta(days=7, seconds=1), "604801 s before the ingest clock"),
    ],
)
def test_capture_times_outside_the_window_are_invalid_headers(captured_at, expected):
    image = encode_image(np.zeros((32, 32, 3), np.uint8))
    bad = parse_record(record(image, captured_at), max_frame_bytes=1 << 20, now=NOW)
    assert isinstance(bad, BadFrame)
    assert bad.reason == "invalid_header"
    assert "'captured_at'" in bad.detail
    assert repr(captured_at.isoformat()) in bad.detail
    assert expected in bad.detail


@pytest.mark.parametrize("offset", [timedelta(seconds=299), timedelta(days=-6, hours=-23), timedelta(0)])
def test_capture_times_inside_the_window_pass(offset):
    image = encode_image(np.zeros((32, 32, 3), np.uint8))
    assert isinstance(parse_record(record(image, NOW + offset), max_frame_bytes=1 << 20, now=NOW), Frame)


def test_window_is_configurable():
    image = encode_image(np.zeros((32, 32, 3), np.uint8))
    old = record(image, NOW - timedelta(days=30))
    assert parse_record(old, max_frame_bytes=1 << 20, now=NOW).reason == "invalid_header"
    accepted = parse_record(old, max_frame_bytes=1 << 20, now=NOW, max_capture_age_s=31 * 86400)
    assert isinstance(accepted, Frame)
    ahead = record(image, NOW + timedelta(seconds=10))
    assert parse_record(ahead, max_frame_bytes=1 << 20, now=NOW, max_capture_skew_s=5).reason == "invalid_header"


def test_defaults_agree_with_the_settings():
    from linesight.settings import Settings

    fields = Settings.model_fields
    assert fields["max_frame_pixels"].default == schema.DEFAULT_MAX_FRAME_PIXELS
    assert fields["max_capture_age_s"].default == schema.DEFAULT_MAX_CAPTURE_AGE_S
    assert fields["max_capture_skew_s"].default == schema.DEFAULT_MAX_CAPTURE_SKEW_S
    assert 5472 * 3648 <= schema.DEFAULT_MAX_FRAME_PIXELS  # a 20 MP machine-vision camera fits


def test_decode_image_still_decodes_real_frames():
    image = np.random.default_rng(1).integers(0, 255, (24, 36, 3), np.uint8)
    assert np.array_equal(decode_image(encode_image(image, "png")), image)
    bmp = cv2.imencode(".bmp", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
    assert np.array_equal(decode_image(bmp), image)
    assert decode_image(b"GIF89a....") is None


def test_the_guard_does_not_allocate_the_decoded_size():
    """In a fresh process, refusing the 48 KB bomb leaves the peak RSS where it was (decoding: +1.2 GB RGB)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-m", "tests.unit.connectors.bombs", "guard"], cwd=root,
                            capture_output=True, text=True, timeout=120, check=True)
    line = result.stdout.strip().splitlines()[-1]
    assert "-> too_many_pixels" in line
    growth_mb = float(line.rsplit("+", 1)[1].split()[0])
    assert growth_mb < 50, line  # 20000 x 20000 would be 400 MB even as 8-bit gray
