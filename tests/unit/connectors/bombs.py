"""Hostile images for guard tests: small files that declare huge sizes (never decode these)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A *valid* 1-bit grayscale PNG of ``width`` x ``height`` zeros: ~48 KB for 20000x20000.

    A decoder expands it to width*height bytes (400 MB gray, 1.2 GB as RGB).
    """
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits, all zero
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_with_forged_ihdr(width: int, height: int, image: np.ndarray | None = None) -> bytes:
    """A real small PNG whose IHDR is rewritten to claim ``width`` x ``height`` (CRC fixed)."""
    image = np.zeros((32, 32, 3), np.uint8) if image is None else image
    data = bytearray(cv2.imencode(".png", image)[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_with_forged_sof(width: int, height: int, image: np.ndarray | None = None) -> bytes:
    """A real small JPEG whose SOF segment is rewritten to claim ``width`` x ``height``."""
    image = np.zeros((16, 16, 3), np.uint8) if image is None else image
    data = bytearray(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes())
    index = sof_offset(bytes(data))
    data[index + 5 : index + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def sof_offset(data: bytes) -> int:
    """Byte offset of the first SOF0/SOF2 marker of a baseline/progressive JPEG."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        index = data.find(marker)
        if index >= 0:
            return index
    raise ValueError("no SOF0/SOF2 marker")


def peak_rss_growth_mb(mode: str) -> tuple[str, float]:
    """(outcome, growth of this process's peak RSS in MB) for the 20000x20000 PNG bomb.

    ``mode="guard"``: :func:`connectors.schema.parse_record`; ``mode="decode"``: ``cv2.imdecode``
    alone (what the stream did before the guard, before even converting to RGB).
    """
    import resource
    from datetime import UTC, datetime

    from connectors.schema import parse_record

    bomb = png_bomb()

    class Record:
        topic, partition, offset, key, value = "frames", 0, 0, b"line-1", bomb
        headers = [("frame_id", b"f-1"), ("line_id", b"line-1"), ("camera_id", b"cam-1"),
                   ("product_class", b"brick"), ("captured_at", datetime.now(UTC).isoformat().encode())]

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "guard":
        outcome = parse_record(Record(), max_frame_bytes=1 << 20).reason
    else:
        image = cv2.imdecode(np.frombuffer(bomb, np.uint8), cv2.IMREAD_UNCHANGED)
        outcome = "decoded " + "x".join(str(side) for side in image.shape)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return outcome, (after - before) / 1024.0


if __name__ == "__main__":  # python -m tests.unit.connectors.bombs guard|decode
    import sys

    mode = sys.argv[1] if len(sys.argv) > 1 else "guard"
    outcome, growth_mb = peak_rss_growth_mb(mode)
    print(f"{mode}: {len(png_bomb())}-byte PNG declaring 20000x20000 -> {outcome}; peak RSS +{growth_mb:.0f} MB")
