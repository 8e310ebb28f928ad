"""Hostile frames in a live stream: refused before decoding, dead-lettered with their reason, nothing else lost.

Real Tansu, real ray.init, SQLite. The stream's settings (not parse_record's defaults) are used:
``max_frame_pixels`` and the ``captured_at`` window are set tighter than the defaults here.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.integration.pipeline.test_stream import _prepare, _publish, _repository, _settings, _wait_rows
from tests.unit.connectors.bombs import jpeg_with_forged_sof, png_bomb

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


def test_hostile_frames_are_dead_lettered_by_reason(broker, ray_session, encoder, tmp_path):
    from connectors.kafka import make_consumer, make_producer
    from connectors.schema import FrameHeaders, encode_image, frame_message
    from pipeline.stream.job import Pipeline

    settings = _settings(f"sqlite:///{tmp_path / 'g.db'}", tmp_path, max_frame_pixels=300 * 300,
                         max_capture_age_s=3600, max_capture_skew_s=60)
    _prepare(settings, broker, encoder, classes=("brick",))
    small = encode_image(np.full((32, 32, 3), 100, np.uint8))
    now = datetime.now(UTC)

    def headers(captured_at=now, product_class="brick"):
        base = FrameHeaders(frame_id=f"f-{uuid.uuid4().hex[:8]}", line_id="line-1", camera_id="cam-1",
                            product_class="brick", captured_at=captured_at)
        found = dict(frame_message(base, small)[2])
        found["product_class"] = product_class.encode()
        return list(found.items())

    cases = [
        ("too_many_pixels", png_bomb(), headers()),  # 48 KB declaring 20000x20000
        ("too_many_pixels", jpeg_with_forged_sof(20_000, 20_000), headers()),
        ("too_many_pixels", encode_image(np.zeros((310, 310, 3), np.uint8), "png"), headers()),  # over the setting
        ("undecodable", png_bomb()[:30], headers()),
        ("invalid_header", small, headers(captured_at=now + timedelta(seconds=600))),
        ("invalid_header", small, headers(captured_at=now - timedelta(hours=2))),
        ("invalid_header", small, headers(product_class="..")),
    ]
    producer = make_producer(broker.bootstrap_servers, max_request_size=4 * 1024 * 1024)
    for _reason, value, kafka_headers in cases:
        producer.send(settings.frames_topic, key=b"line-1", value=value, headers=kafka_headers)
    producer.flush()
    producer.close()
    good = _publish(settings, broker, 4, classes=("brick",))
    repository = _repository(settings)
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        _wait_rows(repository, len(good))
        stats = pipeline.stop()
    expected = {"too_many_pixels": 3, "undecodable": 1, "invalid_header": 3}
    assert stats["dead_letter_reasons"] == expected

    consumer = make_consumer(broker.bootstrap_servers, group_id=f"check-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([settings.dead_letter_topic])
    details: list[tuple[str, str]] = []
    deadline = time.monotonic() + 30
    while len(details) < len(cases) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            details += [(dict(r.headers)["dlq.reason"].decode(), dict(r.headers)["dlq.detail"].decode())
                        for r in records]
    consumer.close()
    assert sorted(reason for reason, _ in details) == sorted(reason for reason, _, _ in cases)
    text = "\n".join(detail for _, detail in details)
    assert "20000x20000 px (400.0 MP)" in text
    assert "310x310 px" in text
    assert "limit is 90000 px (max_frame_pixels)" in text
    assert "max_capture_skew_s" in text
    assert "max_capture_age_s" in text
    assert "invalid product class '..'" in text
    assert repository.count_inspections() == len(good)
