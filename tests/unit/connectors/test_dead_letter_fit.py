"""fit_dead_letter: a dead letter always fits the producer's limit, and says what was cut."""

from __future__ import annotations

import pytest

from connectors.dead_letter import (
    MAX_HEADER_VALUE_BYTES,
    MAX_KEPT_HEADERS,
    fit_dead_letter,
    record_size_bytes,
)

ADDED = [("dlq.reason", b"invalid_header"), ("dlq.detail", b"d" * 1000), ("dlq.source_offset", b"7")]
LIMIT = 64 * 1024


def test_a_record_that_fits_is_kept_whole():
    original = [("frame_id", b"f-1"), ("line_id", b"line-1")]
    key, value, headers = fit_dead_letter(b"line-1", b"v" * 1000, original, ADDED, LIMIT)
    assert (key, value, headers) == (b"line-1", b"v" * 1000, original + ADDED)


def test_oversized_headers_are_cut_and_listed_the_value_kept_when_it_then_fits():
    original = [("frame_id", b"f-1"), ("junk", b"j" * 200_000), ("line_id", b"line-1")]
    key, value, headers = fit_dead_letter(b"line-1", b"v" * 1000, original, ADDED, LIMIT)
    found = dict(headers)
    assert record_size_bytes(key, value, headers) <= LIMIT
    assert value == b"v" * 1000  # cutting the header was enough
    assert found["junk"] == b"j" * MAX_HEADER_VALUE_BYTES
    assert found["frame_id"] == b"f-1"
    assert found["dlq.headers_cut"] == b"junk=200000"
    assert int(found["dlq.headers_original_bytes"]) == 3 + 200_000 + 4 + 6 + 8 + 7  # names + values
    assert "dlq.value_dropped_bytes" not in found
    assert all(item in headers for item in ADDED)


def test_long_names_and_too_many_headers_are_dropped_and_counted():
    original = [("n" * 5000, b"x")] + [(f"h{i}", b"y" * 3000) for i in range(100)]
    key, value, headers = fit_dead_letter(None, b"", original, ADDED, 4 * LIMIT)  # 100 x 3 KB + a 5 KB name
    found = dict(headers)
    assert record_size_bytes(key, value, headers) <= 4 * LIMIT
    assert "n" * 5000 not in found
    kept = [name for name, _ in headers if name.startswith("h")]
    assert len(kept) == MAX_KEPT_HEADERS - 1  # the long name took index 0
    listed = found["dlq.headers_cut"].decode()
    assert listed.startswith("n" * 64 + "...=5001,h0=3000")
    assert listed.endswith("more")


@pytest.mark.parametrize("limit", [4 * 1024, 16 * 1024, 1 << 20])
def test_everything_too_large_still_fits_in_the_end(limit):
    original = [(f"h{i}", b"z" * 900) for i in range(60)]  # 54 KB of headers, each under the value cap
    key, value, headers = fit_dead_letter(b"k" * 3 * limit, b"v" * 2 * limit, original, ADDED, limit)
    found = dict(headers)
    assert record_size_bytes(key, value, headers) <= limit
    assert value == b""
    assert int(found["dlq.value_dropped_bytes"]) == 2 * limit
    assert key is None
    assert int(found["dlq.key_dropped_bytes"]) == 3 * limit
    if limit < 54_000:
        assert found["dlq.headers_cut"] == b"*=all"
        assert int(found["dlq.headers_original_bytes"]) == sum(len(f"h{i}") + 900 for i in range(60))
    assert all(item in headers for item in ADDED)
