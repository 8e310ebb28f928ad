"""Image sizes read from PNG IHDR / JPEG SOFn / BMP headers, without decoding."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from connectors.exceptions import FrameError, ImageHeaderError
from connectors.image_header import ImageHeader, read_image_header, sniff_format
from tests.unit.connectors.bombs import jpeg_with_forged_sof, png_bomb, png_with_forged_ihdr, sof_offset


def _encoded(ext: str, height: int, width: int, channels: int = 3, params: list[int] | None = None) -> bytes:
    shape = (height, width, channels) if channels > 1 else (height, width)
    image = np.random.default_rng(height * width).integers(0, 255, shape, np.uint8)
    ok, buffer = cv2.imencode(ext, image, params or [])
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize(("height", "width"), [(16, 16), (48, 64), (65, 3), (480, 640), (1, 1)])
@pytest.mark.parametrize("channels", [1, 3])
def test_sizes_match_what_opencv_decodes(height, width, channels):
    for ext, fmt, params in ((".png", "png", None), (".jpg", "jpeg", None), (".bmp", "bmp", None),
                             (".jpg", "jpeg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])):
        data = _encoded(ext, height, width, channels, params)
        header = read_image_header(data)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert header == ImageHeader(fmt, decoded.shape[1], decoded.shape[0]), (ext, params)


def test_sixteen_bit_png_and_large_sides():
    data = cv2.imencode(".png", np.zeros((3, 70, 1), np.uint16))[1].tobytes()
    assert read_image_header(data) == ImageHeader("png", 70, 3)


def test_bombs_are_read_without_decoding():
    bomb = png_bomb()
    assert len(bomb) < 50_000
    assert read_image_header(bomb) == ImageHeader("png", 20_000, 20_000)
    assert read_image_header(png_bomb(9000, 70)).pixels == 630_000
    jpeg = jpeg_with_forged_sof(20_000, 20_000)
    assert len(jpeg) < 1000
    header = read_image_header(jpeg)
    assert header == ImageHeader("jpeg", 20_000, 20_000)
    assert header.size_text == "20000x20000 px (400.0 MP)"
    assert read_image_header(png_with_forged_ihdr(8192, 8192)).pixels == 8192 * 8192


def test_not_an_image_is_none():
    for data in (b"", b"GIF89a" + b"\0" * 40, b"hello world", b"\x00" * 64, b"BM"):
        assert read_image_header(data) is None
        assert sniff_format(data) is None


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_every_truncation_of_the_header_raises_or_reads_the_true_size(ext):
    """No prefix of a real file makes the parser crash, loop, or invent a size."""
    data = _encoded(ext, 40, 56)
    true = read_image_header(data)
    refused = []
    for cut in range(len(data)):
        prefix = data[:cut]
        try:
            header = read_image_header(prefix)
        except ImageHeaderError as exc:
            refused.append(str(exc))
            continue
        assert header is None or header == true, cut
    assert refused
    assert all(refused)


def test_random_bytes_after_a_magic_never_raise_anything_else():
    rng = np.random.default_rng(7)
    for magic in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM"):
        for _ in range(300):
            data = magic + rng.integers(0, 256, int(rng.integers(0, 200)), np.uint8).tobytes()
            try:
                header = read_image_header(data)
            except ImageHeaderError:
                continue
            assert header is None or header.pixels >= 1


def test_png_corruption_is_named():
    data = bytearray(_encoded(".png", 32, 32))
    data[20] ^= 0xFF  # height byte: IHDR CRC no longer matches
    with pytest.raises(ImageHeaderError, match="CRC"):
        read_image_header(bytes(data))
    with pytest.raises(ImageHeaderError, match="impossible size 0x32"):
        read_image_header(png_with_forged_ihdr(0, 32))
    with pytest.raises(ImageHeaderError, match=r"impossible size 2147483648x1"):
        read_image_header(png_with_forged_ihdr(2**31, 1))
    not_ihdr = bytearray(_encoded(".png", 32, 32))
    not_ihdr[12:16] = b"IDAT"
    with pytest.raises(ImageHeaderError, match="IHDR"):
        read_image_header(bytes(not_ihdr))


def test_jpeg_corruption_is_named():
    data = _encoded(".jpg", 32, 32)
    index = sof_offset(data)
    with pytest.raises(ImageHeaderError, match="size of 0x32 px"):
        read_image_header(jpeg_with_forged_sof(0, 32))
    no_sof = data[:index] + b"\xff\xda" + data[index + 2:]  # SOS where the SOF was
    with pytest.raises(ImageHeaderError, match="no start-of-frame"):
        read_image_header(no_sof)
    bad_length = bytearray(data)
    bad_length[index + 2 : index + 4] = struct.pack(">H", 60_000)
    with pytest.raises(ImageHeaderError, match="declares 60000 bytes"):
        read_image_header(bytes(bad_length))
    assert data[2:4] == b"\xff\xe0"  # APP0 (JFIF), 2 + length bytes long
    after_app0 = 4 + struct.unpack(">H", data[4:6])[0]
    garbage = data[:after_app0] + b"\x00\x00" + data[after_app0 + 2:]
    with pytest.raises(ImageHeaderError, match=f"expected a marker at byte {after_app0}"):
        read_image_header(garbage)


def test_bmp_negative_height_is_top_down():
    data = bytearray(_encoded(".bmp", 20, 30))
    data[22:26] = struct.pack("<i", -20)
    assert read_image_header(bytes(data)) == ImageHeader("bmp", 30, 20)
    data[18:22] = struct.pack("<i", 0)
    with pytest.raises(ImageHeaderError, match="0x20"):
        read_image_header(bytes(data))


def test_header_error_is_a_frame_error():
    assert issubclass(ImageHeaderError, FrameError)
