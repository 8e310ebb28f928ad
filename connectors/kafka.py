"""Kafka client factories (kafka-python) with the settings measured in ENVIRONMENT.md.

- producer: ``linger_ms=5``, ``batch_size=1 MiB``, ``acks="all"``; ``max_request_size`` is required so an
  oversize frame fails in the client, as it would against a production broker (Tansu enforces no limit).
- consumer: a group with manual commits (``enable_auto_commit=False``), ``auto_offset_reset="earliest"``
  (``"latest"`` is wrong on Tansu after batched produces), ``session_timeout_ms=6000`` with
  ``heartbeat_interval_ms=1000`` (a group join takes about half the session timeout).

Client construction errors become :class:`ConnectorError` naming the servers.

>>> producer = make_producer("127.0.0.1:9092", max_request_size=1_048_576)  # doctest: +SKIP
>>> ensure_topics("127.0.0.1:9092", {"linesight.frames": 4})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from connectors.exceptions import ConnectorError

__all__ = [
    "DEFAULT_BATCH_SIZE_BYTES",
    "consumer_config",
    "ensure_topics",
    "make_admin",
    "make_consumer",
    "make_producer",
    "producer_config",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE_BYTES = 1 << 20  # 1 MiB: ~4500 frames/s of 55 KB with linger_ms=5 (ENVIRONMENT.md)
_TOPIC_ALREADY_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS


def producer_config(
    bootstrap_servers: str,
    *,
    max_request_size: int,
    linger_ms: int = 5,
    batch_size: int = DEFAULT_BATCH_SIZE_BYTES,
    acks: str | int = "all",
    client_id: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The keyword arguments :func:`make_producer` passes to ``KafkaProducer``."""
    if max_request_size < 1024:
        raise ConnectorError(f"max_request_size must be >= 1024 bytes, got {max_request_size}")
    if linger_ms < 0:
        raise ConnectorError(f"linger_ms must be >= 0, got {linger_ms}")
    if batch_size < 1:
        raise ConnectorError(f"batch_size must be >= 1 byte, got {batch_size}")
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "max_request_size": max_request_size,
        "linger_ms": linger_ms,
        "batch_size": batch_size,
        "acks": acks,
    }
    if client_id is not None:
        config["client_id"] = client_id
    config.update(overrides)
    return config


def make_producer(bootstrap_servers: str, **options: Any) -> KafkaProducer:
    """A ``KafkaProducer`` with the measured settings; ``options`` as :func:`producer_config`.

    A record larger than ``max_request_size`` makes ``send`` raise ``MessageSizeTooLargeError``.

    >>> producer = make_producer("127.0.0.1:9092", max_request_size=1_048_576)  # doctest: +SKIP
    >>> producer.send("linesight.frames", key=b"line-1", value=b"...").get(timeout=10)  # doctest: +SKIP
    """
    config = producer_config(bootstrap_servers, **options)
    try:
        return KafkaProducer(**config)
    except (KafkaError, ValueError) as exc:
        raise ConnectorError(f"cannot create a Kafka producer for {bootstrap_servers!r}: {exc}") from exc


def consumer_config(
    bootstrap_servers: str,
    *,
    group_id: str | None,
    client_id: str | None = None,
    max_poll_records: int = 500,
    session_timeout_ms: int = 6000,
    heartbeat_interval_ms: int = 1000,
    auto_offset_reset: str = "earliest",
    enable_auto_commit: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """The keyword arguments :func:`make_consumer` passes to ``KafkaConsumer``."""
    if max_poll_records < 1:
        raise ConnectorError(f"max_poll_records must be >= 1, got {max_poll_records}")
    if heartbeat_interval_ms >= session_timeout_ms:
        raise ConnectorError(
            f"heartbeat_interval_ms ({heartbeat_interval_ms}) must be below session_timeout_ms ({session_timeout_ms})"
        )
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "group_id": group_id,
        "max_poll_records": max_poll_records,
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": heartbeat_interval_ms,
        "auto_offset_reset": auto_offset_reset,
        "enable_auto_commit": enable_auto_commit,
    }
    if client_id is not None:
        config["client_id"] = client_id
    config.update(overrides)
    return config


def make_consumer(bootstrap_servers: str, **options: Any) -> KafkaConsumer:
    """A ``KafkaConsumer`` (not subscribed yet) with manual commits and the measured group timings;
    ``options`` as :func:`consumer_config` (``group_id`` is required).

    >>> consumer = make_consumer("127.0.0.1:9092", group_id="linesight-inspect")  # doctest: +SKIP
    >>> consumer.subscribe(["linesight.frames"])  # doctest: +SKIP
    """
    config = consumer_config(bootstrap_servers, **options)
    try:
        return KafkaConsumer(**config)
    except (KafkaError, ValueError) as exc:
        raise ConnectorError(f"cannot create a Kafka consumer for {bootstrap_servers!r}: {exc}") from exc


def make_admin(bootstrap_servers: str, **overrides: Any) -> KafkaAdminClient:
    """A ``KafkaAdminClient``; errors become :class:`ConnectorError` naming the servers."""
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap_servers, **overrides)
    except (KafkaError, ValueError) as exc:
        raise ConnectorError(f"cannot connect a Kafka admin client to {bootstrap_servers!r}: {exc}") from exc


def ensure_topics(
    bootstrap_servers: str, partitions_by_topic: Mapping[str, int], *, replication_factor: int = 1,
    timeout_s: float = 10.0,
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns the names created now.

    An existing topic is left as it is (its partition count is not changed). Waits until every
    topic is visible in the broker's metadata.

    >>> ensure_topics("127.0.0.1:9092", {"linesight.frames": 4, "linesight.alerts": 1})  # doctest: +SKIP
    ['linesight.frames', 'linesight.alerts']
    """
    for topic, partitions in partitions_by_topic.items():
        if partitions < 1:
            raise ConnectorError(f"topic {topic!r} needs >= 1 partition, got {partitions}")
    if not partitions_by_topic:
        return []
    admin = make_admin(bootstrap_servers)
    try:
        new_topics = {
            topic: {"num_partitions": partitions, "replication_factor": replication_factor}
            for topic, partitions in partitions_by_topic.items()
        }
        response = admin.create_topics(new_topics, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        created = []
        for entry in response["topics"]:
            code = entry["error_code"]
            if code == 0:
                created.append(entry["name"])
            elif code != _TOPIC_ALREADY_EXISTS:
                raise ConnectorError(
                    f"cannot create topic {entry['name']!r} on {bootstrap_servers!r}: error code {code} "
                    f"({entry.get('error_message') or 'no message'})"
                )
        admin.wait_for_topics(list(partitions_by_topic), timeout_ms=int(timeout_s * 1000))
        if created:
            log.info("created topics %s on %s", created, bootstrap_servers)
        return created
    except KafkaError as exc:
        raise ConnectorError(f"cannot create topics {list(partitions_by_topic)} on {bootstrap_servers!r}: {exc}") from exc
    finally:
        admin.close()
