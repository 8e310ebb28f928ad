"""What every stream needs before it starts: topics exist and the database schema is current."""

from __future__ import annotations

from linesight.settings import Settings

__all__ = ["prepare", "ensure_stream_topics"]


def prepare(settings: Settings, bootstrap_servers: str) -> None:
    """Create the frames/alerts/dead-letter topics (idempotent; partitions, replication factor and retention
    from ``settings``) and migrate the database to head."""
    from storage.db import Database

    ensure_stream_topics(settings, bootstrap_servers)
    database = Database(settings.database_url)
    try:
        database.migrate()
    finally:
        database.dispose()


def ensure_stream_topics(settings: Settings, bootstrap_servers: str) -> None:
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
