"""Helpers for the connector integration tests (the session ``broker`` fixture is in tests/integration)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import TopicPartition

from connectors.kafka import ensure_topics, make_consumer, make_producer

MAX_FRAME_BYTES = 1_048_576  # the production limit (Settings.max_frame_bytes)


@pytest.fixture
def topic_factory(broker) -> Callable[..., str]:
    """Create a uniquely named topic: ``topic_factory(partitions=1, prefix="t")``."""

    def create(partitions: int = 1, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        ensure_topics(broker.bootstrap_servers, {name: partitions})
        return name

    return create


@pytest.fixture
def producer(broker) -> Iterator[object]:
    client = make_producer(broker.bootstrap_servers, max_request_size=MAX_FRAME_BYTES)
    try:
        yield client
    finally:
        client.close()


def consume_all(bootstrap_servers: str, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Read ``expected`` records of ``topic`` from the start, no group (waits on counts, never end offsets)."""
    consumer = make_consumer(bootstrap_servers, group_id=None)
    partitions = consumer.partitions_for_topic(topic)
    assert partitions, f"topic {topic!r} has no partitions"
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
    consumer.seek_to_beginning()
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close(autocommit=False)
    return records


def poll_until(source, expected: int, timeout_s: float = 30.0) -> list:
    """Poll a KafkaFrameSource until ``expected`` records arrived (or the timeout)."""
    records: list = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        records.extend(source.poll(timeout_ms=200))
    return records
