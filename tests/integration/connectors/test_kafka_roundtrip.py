"""Frames through a real (embedded Tansu) broker: headers survive, commits resume, limits hold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from kafka import TopicPartition
from kafka.errors import MessageSizeTooLargeError

from connectors.exceptions import ConnectorError
from connectors.kafka import ensure_topics, make_producer
from connectors.schema import Frame, FrameHeaders, encode_image, frame_message, parse_record
from connectors.source import KafkaFrameSource
from tests.integration.connectors.conftest import MAX_FRAME_BYTES, consume_all, poll_until

pytestmark = pytest.mark.integration


def frame_bytes(index: int) -> tuple[FrameHeaders, bytes]:
    image = np.full((32, 48, 3), index * 10 % 256, np.uint8)
    headers = FrameHeaders(
        frame_id=f"line-1-{index:04d}", line_id="line-1", camera_id="cam-1", product_class="brick",
        captured_at=datetime.now(UTC),
    )
    return headers, encode_image(image, "png")


def test_ensure_topics_is_idempotent(broker):
    name = f"t-{uuid.uuid4().hex[:12]}"
    assert ensure_topics(broker.bootstrap_servers, {name: 3}) == [name]
    assert ensure_topics(broker.bootstrap_servers, {name: 3}) == []


def test_bad_topic_settings_name_the_topic(broker):
    with pytest.raises(ConnectorError, match="'x'"):
        ensure_topics(broker.bootstrap_servers, {"x": 0})


def test_produce_consume_round_trip_keeps_headers_and_image(broker, producer, topic_factory):
    topic = topic_factory(partitions=2)
    sent = {}
    for index in range(6):
        headers, image = frame_bytes(index)
        key, value, kafka_headers = frame_message(headers, image)
        producer.send(topic, key=key, value=value, headers=kafka_headers)
        sent[headers.frame_id] = headers
    producer.flush()
    records = consume_all(broker.bootstrap_servers, topic, expected=6)
    frames = [parse_record(r, max_frame_bytes=MAX_FRAME_BYTES, known_classes={"brick"}) for r in records]
    assert all(isinstance(f, Frame) for f in frames)
    assert {f.headers.frame_id: f.headers for f in frames} == sent  # captured_at round-trips exactly
    assert {r.key for r in records} == {b"line-1"}
    assert len({r.partition for r in records}) == 1  # one key, one partition: per-line order
    for frame in frames:
        index = int(frame.headers.frame_id.rsplit("-", 1)[1])
        assert frame.image.shape == (32, 48, 3)
        assert int(frame.image[0, 0, 0]) == index * 10


def test_new_consumer_in_the_group_resumes_after_the_committed_offset(broker, producer, topic_factory):
    topic = topic_factory(partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    for index in range(10):
        producer.send(topic, key=b"line-1", value=b"frame-%d" % index)
    producer.flush()

    first = KafkaFrameSource(broker.bootstrap_servers, topic, group, max_poll_records=4)
    try:
        records = poll_until(first, expected=10)
        assert [r.offset for r in records] == list(range(10))
        assert first.assignment() == {TopicPartition(topic, 0)}
        first.commit({TopicPartition(topic, 0): records[5].offset + 1})  # processed 0..5
        assert first.committed(TopicPartition(topic, 0)) == 6
    finally:
        first.close()

    second = KafkaFrameSource(broker.bootstrap_servers, topic, group, fetch_max_wait_ms=10)
    try:
        assert second._consumer.config["fetch_max_wait_ms"] == 10  # LINESIGHT_FETCH_MAX_WAIT_MS reaches the consumer
        resumed = poll_until(second, expected=4)
    finally:
        second.close()
    assert [r.value for r in resumed] == [b"frame-6", b"frame-7", b"frame-8", b"frame-9"]


def test_oversize_frame_is_rejected_by_the_producer_limit(broker, topic_factory):
    topic = topic_factory()
    producer = make_producer(broker.bootstrap_servers, max_request_size=MAX_FRAME_BYTES)
    try:
        noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
        headers, _ = frame_bytes(0)
        key, value, kafka_headers = frame_message(headers, encode_image(noise, "png"))
        assert len(value) > MAX_FRAME_BYTES
        with pytest.raises(MessageSizeTooLargeError):
            producer.send(topic, key=key, value=value, headers=kafka_headers)
        producer.send(topic, key=b"line-1", value=b"small").get(timeout=10)  # the producer still works
    finally:
        producer.close()
    assert [r.value for r in consume_all(broker.bootstrap_servers, topic, expected=1)] == [b"small"]


def test_a_broker_that_is_not_there_is_named():
    from connectors.kafka import make_admin
    from connectors.tansu import free_port

    servers = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConnectorError, match=servers):
        make_admin(servers, bootstrap_timeout_ms=1000, request_timeout_ms=1000)
