"""Dead letters never block: records over the dead-letter producer's limit are cut to fit (real Tansu)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from kafka.errors import MessageSizeTooLargeError

from connectors.dead_letter import MAX_HEADER_VALUE_BYTES, DeadLetterSink
from connectors.kafka import make_producer
from connectors.schema import BadFrame, encode_image, parse_record
from tests.integration.connectors.conftest import MAX_FRAME_BYTES, consume_all

pytestmark = pytest.mark.integration


def _frame_headers(product_class: bytes) -> list[tuple[str, bytes]]:
    return [("frame_id", b"line-1-poison"), ("line_id", b"line-1"), ("camera_id", b"cam-1"),
            ("product_class", product_class), ("captured_at", datetime.now(UTC).isoformat().encode())]


def test_records_with_headers_over_the_limit_are_dead_lettered_cut(broker, topic_factory):
    frames, dead = topic_factory(prefix="frames"), topic_factory(prefix="dlq")
    image = encode_image(np.full((32, 32, 3), 90, np.uint8))
    big_class = b"c" * 1_500_000  # a header alone larger than max_request_size (1 MiB)
    trace = b"t" * 700_000
    loose = make_producer(broker.bootstrap_servers, max_request_size=8 * MAX_FRAME_BYTES)
    limited = make_producer(broker.bootstrap_servers, max_request_size=MAX_FRAME_BYTES)
    try:
        loose.send(frames, key=b"line-1", value=image, headers=[*_frame_headers(big_class), ("x-trace", trace)])
        loose.send(frames, key=b"line-1", value=b"v" * (2 * MAX_FRAME_BYTES), headers=_frame_headers(big_class))
        loose.flush()
        records = consume_all(broker.bootstrap_servers, frames, expected=2)
        assert len(records) == 2
        bad = [parse_record(r, max_frame_bytes=MAX_FRAME_BYTES) for r in records]
        assert all(isinstance(b, BadFrame) for b in bad)
        assert [b.reason for b in bad] == ["invalid_header", "oversize"]
        with pytest.raises(MessageSizeTooLargeError):  # as received, the record cannot be re-sent
            limited.send(dead, key=records[0].key, value=records[0].value, headers=records[0].headers)

        sink = DeadLetterSink(limited, dead)
        for item in bad:
            sink.send(item.record, item.reason, item.detail)
        sink.flush()  # no DeliveryError: nothing blocks the partition
        assert sink.reasons == {"invalid_header": 1, "oversize": 1}
        assert sink.cut == 2
    finally:
        loose.close()
        limited.close()

    letters = sorted(consume_all(broker.bootstrap_servers, dead, expected=2), key=lambda r: r.offset)
    assert len(letters) == 2
    first, second = (dict(letter.headers) for letter in letters)

    assert letters[0].value == image  # the headers were cut; the image still fits and is kept
    assert first["dlq.reason"] == b"invalid_header"
    assert first["product_class"] == big_class[:MAX_HEADER_VALUE_BYTES]
    assert first["x-trace"] == trace[:MAX_HEADER_VALUE_BYTES]
    assert first["dlq.headers_cut"] == b"product_class=1500000,x-trace=700000"
    assert int(first["dlq.headers_original_bytes"]) > 2_200_000
    assert first["frame_id"] == b"line-1-poison"
    assert int(first["dlq.source_offset"]) == records[0].offset
    assert "dlq.value_dropped_bytes" not in first

    assert letters[1].value == b""  # headers cut and the value dropped
    assert second["dlq.reason"] == b"oversize"
    assert int(second["dlq.value_dropped_bytes"]) == 2 * MAX_FRAME_BYTES
    assert second["dlq.headers_cut"] == b"product_class=1500000"
    assert letters[1].key == b"line-1"
