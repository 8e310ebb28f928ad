"""What every stream needs before it starts: topics exist and the database schema is current."""

from __future__ import annotations

from linesight.settings import Settings

__all__ = ["prepare"]


def prepare(settings: Settings, bootstrap_servers: str) -> None:
    """Create the frames/alerts/dead-letter topics (idempotent; partitions, replication factor and retention
    from ``settings``) and migrate the database to head."""
    from connectors.kafka import ensure_topics
    from storage.db import Database

    ensure_topics(
        bootstrap_servers,
        {settings.frames_topic: settings.frames_partitions, settings.alerts_topic: 1, settings.dead_letter_topic: 1},
        replication_factor=settings.kafka_replication_factor,
        configs_by_topic=settings.topic_configs,
        security=settings.kafka_security,
    )
    database = Database(settings.database_url)
    try:
        database.migrate()
    finally:
        database.dispose()
