"""Dead-letter and alert sinks against a real broker: headers, JSON, and no silent drops."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from connectors.alerts import Alert, AlertSink, AlertTail
from connectors.dead_letter import DLQ_HEADERS, DeadLetterSink
from connectors.exceptions import DeliveryError
from connectors.kafka import ensure_topics, make_producer
from connectors.schema import BadFrame, parse_record
from connectors.tansu import EmbeddedBroker
from tests.integration.connectors.conftest import MAX_FRAME_BYTES, consume_all

pytestmark = pytest.mark.integration


def make_alert(index: int, line_id: str = "line-1") -> Alert:
    now = datetime.now(UTC)
    return Alert(
        frame_id=f"{line_id}-f{index}", line_id=line_id, camera_id="cam-1", product_class="bracket",
        captured_at=now, scored_at=now, score=0.9, threshold=0.4, positions=["bottom right"], region_count=1,
        verdict="Yes: there is an anomaly at the bottom right.", bank_version=1, inspection_id=index,
    )


def test_dead_letter_keeps_the_record_and_adds_the_reason(broker, producer, topic_factory):
    frames, dead = topic_factory(partitions=2, prefix="frames"), topic_factory(prefix="dlq")
    original_headers = [("frame_id", b"line-1-x"), ("line_id", b"line-1")]
    producer.send(frames, key=b"line-1", value=b"\x00garbage", headers=original_headers)
    producer.flush()
    [record] = consume_all(broker.bootstrap_servers, frames, expected=1)
    bad = parse_record(record, max_frame_bytes=MAX_FRAME_BYTES)
    assert isinstance(bad, BadFrame)
    assert bad.reason == "missing_header"

    sink = DeadLetterSink(producer, dead)
    sink.send(bad.record, bad.reason, bad.detail)
    sink.flush()
    assert sink.reasons == {"missing_header": 1}

    [letter] = consume_all(broker.bootstrap_servers, dead, expected=1)
    headers = dict(letter.headers)
    assert letter.key == b"line-1"
    assert letter.value == b"\x00garbage"
    assert all(name in headers for name in DLQ_HEADERS)
    assert headers["frame_id"] == b"line-1-x"
    assert headers["dlq.reason"] == b"missing_header"
    assert b"camera_id" in headers["dlq.detail"]
    assert headers["dlq.source_topic"] == frames.encode()
    assert int(headers["dlq.source_partition"]) == record.partition
    assert int(headers["dlq.source_offset"]) == record.offset
    assert datetime.fromisoformat(headers["dlq.failed_at"].decode()).tzinfo is not None


def test_oversize_dead_letter_drops_the_value_and_says_so(broker, topic_factory):
    frames, dead = topic_factory(prefix="frames"), topic_factory(prefix="dlq")
    big = make_producer(broker.bootstrap_servers, max_request_size=4 * MAX_FRAME_BYTES)
    small = make_producer(broker.bootstrap_servers, max_request_size=MAX_FRAME_BYTES)
    try:
        big.send(frames, key=b"line-1", value=b"x" * (2 * MAX_FRAME_BYTES)).get(timeout=10)
        [record] = consume_all(broker.bootstrap_servers, frames, expected=1)
        bad = parse_record(record, max_frame_bytes=MAX_FRAME_BYTES)
        assert bad.reason == "oversize"
        sink = DeadLetterSink(small, dead)
        sink.send(record, bad.reason, bad.detail)
        sink.close()
    finally:
        big.close()
        small.close()
    [letter] = consume_all(broker.bootstrap_servers, dead, expected=1)
    headers = dict(letter.headers)
    assert letter.value == b""
    assert headers["dlq.reason"] == b"oversize"
    assert int(headers["dlq.value_dropped_bytes"]) == 2 * MAX_FRAME_BYTES


def test_alert_sink_json_round_trip_and_tail(broker, producer, topic_factory):
    topic = topic_factory(prefix="alerts")
    sink = AlertSink(producer, topic)
    assert sink.warm_up(timeout_s=30) is True  # the live broker answers with the topic's metadata
    sent = [make_alert(1), make_alert(2, line_id="line-2")]
    for alert in sent:
        sink.send(alert)
    sink.flush()

    records = consume_all(broker.bootstrap_servers, topic, expected=2)
    by_id = {alert.alert_id: alert for alert in sent}
    assert {a.alert_id: a for a in (Alert.from_json_bytes(r.value) for r in records)} == by_id
    assert {r.key for r in records} == {b"line-1", b"line-2"}
    assert all(dict(r.headers)["alert.schema_version"] == b"1" for r in records)

    with AlertTail(broker.bootstrap_servers, topic, from_beginning=True) as tail:
        assert {a.alert_id: a for a in tail.alerts(count=2, timeout_s=30)} == by_id


def test_tail_without_from_beginning_shows_only_new_alerts(broker, producer, topic_factory):
    topic = topic_factory(prefix="alerts")
    sink = AlertSink(producer, topic)
    sink.send(make_alert(1))
    sink.flush()
    time.sleep(0.05)  # the old alert's timestamp is before the tail starts
    with AlertTail(broker.bootstrap_servers, topic) as tail:
        producer.send(topic, value=b"not json")  # skipped, counted
        sink.send(make_alert(2))
        sink.flush()
        assert [a.frame_id for a in tail.alerts(count=1, timeout_s=30)] == ["line-1-f2"]
        assert tail.skipped == 1


def test_flush_raises_when_the_broker_is_gone():
    with EmbeddedBroker() as lost:
        ensure_topics(lost.bootstrap_servers, {"alerts": 1})
        producer = make_producer(
            lost.bootstrap_servers, max_request_size=MAX_FRAME_BYTES,
            delivery_timeout_ms=1500, request_timeout_ms=1000, max_block_ms=1000,
        )
        producer.send("alerts", value=b"warm-up").get(timeout=10)  # metadata known
        lost.stop()
        sink = AlertSink(producer, "alerts")
        try:
            sink.send(make_alert(1))
            with pytest.raises(DeliveryError, match="alert line-1-f1"):
                sink.flush(timeout_s=30)
        finally:
            producer.close(timeout=1)
