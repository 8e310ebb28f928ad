"""What every stream needs before it starts: topics exist and the database schema is current."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["StreamTopicsConfig", "prepare", "ensure_stream_topics"]


class StreamTopicsConfig(Protocol):
    """What :func:`prepare` reads (``linesight.settings.Settings`` has all of it; nothing here imports it)."""

    frames_topic: str
    frames_partitions: int
    alerts_topic: str
    dead_letter_topic: str
    kafka_replication_factor: int
    database_url: str

    @property
    def topic_configs(self) -> Mapping[str, Mapping[str, int]]: ...

    @property
    def kafka_security(self) -> Mapping[str, Any]: ...


def prepare(settings: StreamTopicsConfig, bootstrap_servers: str) -> None:
    """Create the frames/alerts/dead-letter topics (idempotent; partitions, replication factor and retention
    from ``settings``) and migrate the database to head."""
    from storage.db import Database

    ensure_stream_topics(settings, bootstrap_servers)
    database = Database(settings.database_url)
    try:
        database.migrate()
    finally:
        database.dispose()


def ensure_stream_topics(settings: StreamTopicsConfig, bootstrap_servers: str) -> None:
    """Create those of the frames/alerts/dead-letter topics that do not exist (also after a memory-only broker
    restarted empty)."""
    from connectors.kafka import ensure_topics

    ensure_topics(
        bootstrap_servers,
        {settings.frames_topic: settings.frames_partitions, settings.alerts_topic: 1, settings.dead_letter_topic: 1},
        replication_factor=settings.kafka_replication_factor,
        configs_by_topic=settings.topic_configs,
        security=settings.kafka_security,
    )
