"""Image dimensions read from the file header, before anything decodes the pixels.

A 48 KB PNG or a 689-byte JPEG can declare 20000x20000 px: decoding it first allocates 1.2 GB.
:func:`read_image_header` parses the PNG ``IHDR`` chunk (CRC checked), the JPEG ``SOFn`` segment
or the BMP info header, so the caller can refuse a frame by its pixel count without decoding.
Pure: ``struct`` and ``zlib`` only, no OpenCV.

>>> import struct, zlib
>>> ihdr = b"IHDR" + struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
>>> png = b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
>>> read_image_header(png)
ImageHeader(format='png', width_px=20000, height_px=20000)
>>> read_image_header(png).pixels
400000000
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from connectors.exceptions import ImageHeaderError

__all__ = ["IMAGE_SUFFIXES", "ImageHeader", "read_image_header", "sniff_format"]

# File suffixes every folder reader accepts (camera folders, datasets, bank builds, `linesight inspect`):
# the one list, compared lower-cased; OpenCV decodes all of them.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_BMP_MAGIC = b"BM"
_PNG_MAX_SIDE = 2**31 - 1  # PNG spec: width and height are 1..2^31-1
# JPEG start-of-frame markers carry the size (not C4 DHT, C8 JPG, CC DAC)
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_SOS, _EOI = 0xDA, 0xD9


@dataclass(frozen=True)
class ImageHeader:
    """Format and size declared by an image file's header."""

    format: str  # "png" | "jpeg" | "bmp"
    width_px: int
    height_px: int

    @property
    def pixels(self) -> int:
        """width x height: what a decoder would allocate per channel."""
        return self.width_px * self.height_px

    @property
    def size_text(self) -> str:
        """``"WxH px (N.N MP)"`` for error messages."""
        return f"{self.width_px}x{self.height_px} px ({self.pixels / 1e6:.1f} MP)"


def sniff_format(data: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"bmp"`` or ``None`` from the first bytes."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data.startswith(_BMP_MAGIC) and len(data) >= 14:
        return "bmp"
    return None


def read_image_header(data: bytes) -> ImageHeader | None:
    """The declared format and size, ``None`` when the bytes are no PNG/JPEG/BMP at all.

    A PNG/JPEG/BMP whose header is truncated or corrupt (bad IHDR CRC, a segment running past the
    end, a zero or impossible size) raises :class:`ImageHeaderError` naming what is wrong.
    Reads at most the header segments; never decodes pixel data.
    """
    data = bytes(data[:]) if not isinstance(data, bytes) else data
    fmt = sniff_format(data)
    if fmt == "png":
        return _png(data)
    if fmt == "jpeg":
        return _jpeg(data)
    if fmt == "bmp":
        return _bmp(data)
    return None


def _png(data: bytes) -> ImageHeader:
    if len(data) < 33:
        raise ImageHeaderError(f"PNG of {len(data)} bytes is truncated before the end of its IHDR chunk (33 bytes)")
    (length,) = struct.unpack(">I", data[8:12])
    if data[12:16] != b"IHDR" or length != 13:
        raise ImageHeaderError(f"PNG does not start with a 13-byte IHDR chunk (got {data[12:16]!r}, length {length})")
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(data[12:29]) != crc:
        raise ImageHeaderError("PNG IHDR chunk is corrupt (CRC mismatch)")
    width, height = struct.unpack(">II", data[16:24])
    if not (1 <= width <= _PNG_MAX_SIDE and 1 <= height <= _PNG_MAX_SIDE):
        raise ImageHeaderError(f"PNG IHDR declares an impossible size {width}x{height} px")
    return ImageHeader("png", width, height)


def _jpeg(data: bytes) -> ImageHeader:
    index = 2  # after SOI
    end = len(data)
    while True:
        if index + 2 > end:
            raise ImageHeaderError(f"JPEG of {end} bytes ends before a start-of-frame (SOF) marker")
        if data[index] != 0xFF:
            raise ImageHeaderError(f"JPEG is corrupt: expected a marker at byte {index}, got 0x{data[index]:02X}")
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte before a marker
            index += 1
            continue
        if marker in _STANDALONE_MARKERS:
            index += 2
            continue
        if marker in (_SOS, _EOI):
            raise ImageHeaderError(f"JPEG has no start-of-frame (SOF) marker before 0x{marker:02X} at byte {index}")
        if index + 4 > end:
            raise ImageHeaderError(f"JPEG of {end} bytes is truncated inside the segment at byte {index}")
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if length < 2 or index + 2 + length > end:
            raise ImageHeaderError(
                f"JPEG segment 0x{marker:02X} at byte {index} declares {length} bytes; the file has {end - index - 2}"
            )
        if marker in _SOF_MARKERS:
            if length < 8:
                raise ImageHeaderError(f"JPEG SOF segment at byte {index} is {length} bytes, too short for a size")
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            if width == 0 or height == 0:  # height 0 = "defined later by DNL": refused, cannot be checked
                raise ImageHeaderError(f"JPEG SOF declares a size of {width}x{height} px")
            return ImageHeader("jpeg", width, height)
        index += 2 + length


def _bmp(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise ImageHeaderError(f"BMP of {len(data)} bytes is truncated before its size fields")
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit sides
        width, height = struct.unpack("<HH", data[18:22])
    elif header_size >= 40:
        width, height = struct.unpack("<ii", data[18:26])
        height = abs(height)  # negative = top-down rows
    else:
        raise ImageHeaderError(f"BMP info header of {header_size} bytes is not a known BMP variant")
    if width <= 0 or height <= 0:
        raise ImageHeaderError(f"BMP declares an impossible size {width}x{height} px")
    return ImageHeader("bmp", width, height)
