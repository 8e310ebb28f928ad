"""The frame message: headers, encoding, and every reason parse_record can give."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from connectors.exceptions import ConnectorError, FrameError
from connectors.schema import (
    BAD_FRAME_REASONS,
    BadFrame,
    Frame,
    FrameHeaders,
    decode_image,
    encode_image,
    frame_message,
    parse_record,
)
from linesight.errors import LinesightError

CAPTURED_AT = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=123456)  # inside the capture window


@dataclass
class Record:
    """The fields of a kafka-python ConsumerRecord that parse_record reads."""

    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "linesight.frames"
    partition: int = 2
    offset: int = 41
    key: bytes | None = b"line-1"


def make_headers(**over: object) -> FrameHeaders:
    fields = {
        "frame_id": "line-1-abc-0000001", "line_id": "line-1", "camera_id": "cam-1",
        "product_class": "brick", "captured_at": CAPTURED_AT,
    }
    fields.update(over)
    return FrameHeaders(**fields)


def gradient_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 200)], axis=-1).astype(np.uint8)


def record_for(image_bytes: bytes, **header_over: bytes | None) -> Record:
    _, value, kafka_headers = frame_message(make_headers(), image_bytes)
    headers = dict(kafka_headers)
    for name, replacement in header_over.items():
        if replacement is None:
            headers.pop(name)
        else:
            headers[name] = replacement
    return Record(value=value, headers=list(headers.items()))


def test_errors_derive_from_the_root():
    assert issubclass(ConnectorError, LinesightError)
    assert issubclass(FrameError, ConnectorError)


def test_header_round_trip_keeps_every_field_and_timezone():
    headers = make_headers(captured_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))))
    key, value, kafka_headers = frame_message(headers, b"img")
    assert key == b"line-1"
    assert value == b"img"
    assert all(isinstance(v, bytes) for _, v in kafka_headers)
    parsed = FrameHeaders(**{name: v.decode() for name, v in kafka_headers})
    assert parsed == headers
    assert parsed.captured_at.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("frame_id", ""),
        ("frame_id", "has space"),
        ("frame_id", "x" * 129),
        ("line_id", "line/1"),
        ("product_class", "p" * 65),
        ("camera_id", "cam\n1"),
        ("captured_at", datetime(2024, 5, 1, 12, 0)),  # naive
    ],
)
def test_frame_headers_reject_bad_values(field_name, value):
    with pytest.raises(ValidationError):
        make_headers(**{field_name: value})


def test_frame_headers_accept_the_full_alphabet():
    headers = make_headers(frame_id="A-z_0.9:x" + "9" * 119, product_class="screw.M4_v2:a-b")
    assert len(headers.frame_id) == 128


def test_jpeg_round_trip_is_close_and_rgb_ordered():
    image = gradient_rgb()
    decoded = decode_image(encode_image(image, "jpg", quality=95))
    assert decoded.shape == image.shape
    assert decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 3
    assert decoded[..., 2].mean() > 190  # blue stays in channel 2: no BGR swap left over


def test_png_round_trip_is_exact():
    image = gradient_rgb()
    assert np.array_equal(decode_image(encode_image(image, "png")), image)


def test_grayscale_encodes_and_decodes_to_three_channels():
    gray = gradient_rgb()[..., 0]
    decoded = decode_image(encode_image(gray, "png"))
    assert decoded.shape == (*gray.shape, 3)
    assert np.array_equal(decoded[..., 0], gray)
    assert np.array_equal(decoded[..., 2], gray)


@pytest.mark.parametrize(
    ("image", "fmt", "quality", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), "jpg", 90, "float32"),
        (np.zeros((8, 8, 4), np.uint8), "jpg", 90, "(8, 8, 4)"),
        (np.zeros((8, 8, 3), np.uint8), "gif", 90, "'gif'"),
        (np.zeros((8, 8, 3), np.uint8), "jpg", 0, "got 0"),
    ],
)
def test_encode_image_names_the_bad_input(image, fmt, quality, message):
    with pytest.raises(FrameError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encode_image(image, fmt, quality)


def test_parse_valid_record_returns_decoded_frame():
    image = gradient_rgb()
    record = record_for(encode_image(image, "png"))
    frame = parse_record(record, max_frame_bytes=1 << 20, known_classes={"brick", "grass"})
    assert isinstance(frame, Frame)
    assert frame.headers == make_headers()
    assert np.array_equal(frame.image, image)
    assert (frame.topic, frame.partition, frame.offset) == ("linesight.frames", 2, 41)
    assert frame.size_bytes == len(record.value)


def test_oversize():
    record = record_for(encode_image(gradient_rgb(), "png"))
    bad = parse_record(record, max_frame_bytes=len(record.value) - 1)
    assert isinstance(bad, BadFrame)
    assert bad.reason == "oversize"
    assert str(len(record.value)) in bad.detail
    assert str(len(record.value) - 1) in bad.detail
    assert bad.record is record


@pytest.mark.parametrize("name", ["frame_id", "line_id", "camera_id", "product_class", "captured_at"])
def test_missing_header_names_it(name):
    bad = parse_record(record_for(encode_image(gradient_rgb()), **{name: None}), max_frame_bytes=1 << 20)
    assert bad.reason == "missing_header"
    assert repr(name) in bad.detail


@pytest.mark.parametrize(
    ("name", "value"),
    [("captured_at", b"yesterday-ish"), ("captured_at", b"2024-05-01T12:00:00"), ("frame_id", b"bad id!"),
     ("product_class", b"\xff\xfe")],
)
def test_invalid_header_names_header_and_value(name, value):
    bad = parse_record(record_for(encode_image(gradient_rgb()), **{name: value}), max_frame_bytes=1 << 20)
    assert bad.reason == "invalid_header"
    assert repr(name) in bad.detail
    assert repr(value.decode(errors="replace"))[1:-1] in bad.detail or repr(value)[2:-1] in bad.detail


@pytest.mark.parametrize("value", [b"", None, b"\x00\x01garbage, not a JPEG"])
def test_not_an_image(value):
    record = record_for(b"x")
    record.value = value
    bad = parse_record(record, max_frame_bytes=1 << 20)
    assert bad.reason == "not_an_image"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.zeros((10, 64, 3), np.uint8), "smaller than 16 px"),
        (np.zeros((16, 8200, 3), np.uint8), "larger than 8192 px"),
        (np.zeros((32, 32, 4), np.uint8), "got 4"),
        (np.zeros((32, 32), np.uint16), "uint16"),
    ],
)
def test_bad_image_shape(image, expected):
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    bad = parse_record(record_for(buffer.tobytes()), max_frame_bytes=1 << 20)
    assert isinstance(bad, BadFrame)
    assert bad.reason == "bad_image_shape"
    assert expected in bad.detail


def test_unknown_class_names_the_class_and_the_known_ones():
    record = record_for(encode_image(gradient_rgb()), product_class=b"no-such-class")
    bad = parse_record(record, max_frame_bytes=1 << 20, known_classes={"brick", "grass"})
    assert bad.reason == "unknown_class"
    assert "'no-such-class'" in bad.detail
    assert "brick, grass" in bad.detail
    assert isinstance(parse_record(record, max_frame_bytes=1 << 20), Frame)  # no class list: accepted


def test_every_reason_code_is_listed():
    assert set(BAD_FRAME_REASONS) == {
        "oversize", "missing_header", "invalid_header", "not_an_image", "undecodable", "too_many_pixels",
        "bad_image_shape", "unknown_class",
    }
