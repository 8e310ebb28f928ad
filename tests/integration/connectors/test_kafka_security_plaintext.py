"""The security options on a PLAINTEXT run: every client kind built with ``settings.kafka_security`` works
against the real (Tansu) broker, and topics are created with the configured retention and replication."""

from __future__ import annotations

import uuid

import pytest

from connectors.exceptions import ConnectorError
from connectors.kafka import ensure_topics, make_admin, make_producer
from connectors.source import KafkaFrameSource
from linesight.settings import load_settings
from tests.integration.connectors.conftest import poll_until

pytestmark = pytest.mark.integration


def _settings(broker, sqlite_url: str, **overrides):
    suffix = uuid.uuid4().hex[:8]
    return load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers, kafka_security_protocol="PLAINTEXT",
        kafka_replication_factor=1, frames_retention_ms=3_600_000, dead_letter_retention_ms=7_200_000,
        frames_topic=f"frames-{suffix}", alerts_topic=f"alerts-{suffix}", dead_letter_topic=f"dlq-{suffix}",
        database_url=sqlite_url, frames_partitions=3, **overrides,
    )


def test_plaintext_clients_built_from_settings_round_trip(broker, sqlite_url):
    from linesight.api.routes.health import check_broker
    from pipeline.stream.prepare import prepare

    settings = _settings(broker, sqlite_url)
    security = settings.kafka_security
    assert security == {"security_protocol": "PLAINTEXT"}
    prepare(settings, broker.bootstrap_servers)  # topics with retention configs, replication factor 1
    producer = make_producer(broker.bootstrap_servers, max_request_size=settings.max_frame_bytes, security=security)
    try:
        for index in range(5):
            producer.send(settings.frames_topic, key=b"line-1", value=f"frame-{index}".encode())
        producer.flush()
    finally:
        producer.close()
    source = KafkaFrameSource(broker.bootstrap_servers, settings.frames_topic, f"g-{uuid.uuid4().hex[:6]}",
                              security=security)
    try:
        records = poll_until(source, expected=5)
    finally:
        source.close()
    assert sorted(r.value for r in records) == [f"frame-{i}".encode() for i in range(5)]
    admin = make_admin(broker.bootstrap_servers, security=security)
    try:
        partitions = {p["partition_index"] for t in admin.describe_topics([settings.frames_topic]) for p in t["partitions"]}
    finally:
        admin.close()
    assert partitions == {0, 1, 2}
    assert check_broker(broker.bootstrap_servers, security=security)["status"] == "ok"


def test_topic_configs_are_accepted_at_creation(broker):
    name = f"retained-{uuid.uuid4().hex[:8]}"
    created = ensure_topics(broker.bootstrap_servers, {name: 2}, configs_by_topic={name: {"retention.ms": 3_600_000},
                            "not-created-here": {"retention.ms": 1}}, security={"security_protocol": "PLAINTEXT"})
    assert created == [name]


def test_a_replication_factor_below_one_is_named(broker):
    with pytest.raises(ConnectorError, match="replication_factor must be >= 1, got 0"):
        ensure_topics(broker.bootstrap_servers, {"x-rf": 1}, replication_factor=0)


def test_an_existing_topic_with_fewer_partitions_is_reported(broker, caplog):
    name = f"narrow-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap_servers, {name: 2})
    with caplog.at_level("WARNING", logger="connectors.kafka"):
        assert ensure_topics(broker.bootstrap_servers, {name: 6}) == []
    assert f"topic '{name}' on {broker.bootstrap_servers} has 2 partitions but 6 are configured" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="connectors.kafka"):
        ensure_topics(broker.bootstrap_servers, {name: 2})
    assert "partitions but" not in caplog.text
