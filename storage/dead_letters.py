"""The dead-letter ledger in SQL: which source records were written to the dead-letter topic.

The stream writes a dead letter, flushes it, records it here, and only then commits the source
offset. A replay of the same record (a crash before the commit, a group reset to the start) finds
its row and does not dead-letter it again. A record is identified by its position and digest,
``(source_topic, source_partition, source_offset, record_sha256)``: the digest tells a replay
from another record at a reused position (a topic deleted and recreated, or a restarted
memory-only broker that numbers offsets from 0 again).

Writes are ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (SQLite and PostgreSQL), so recording
the same dead letter twice inserts one row.

>>> from storage.db import Database
>>> database = Database("sqlite://"); _ = database.migrate()
>>> key = DeadLetterKey("frames", 0, 7, "ab" * 32)
>>> record_dead_letters(database, [DeadLetterEntry(key, "not_an_image", "12 bytes")])
1
>>> record_dead_letters(database, [DeadLetterEntry(key, "not_an_image", "12 bytes")])  # replayed: no new row
0
>>> recorded_dead_letters(database, [key, DeadLetterKey("frames", 0, 7, "cd" * 32)]) == {key}
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from storage.exceptions import InvalidRecordError, StorageError
from storage.models import DeadLetter

if TYPE_CHECKING:
    from storage.db import Database

__all__ = ["DeadLetterKey", "DeadLetterEntry", "recorded_dead_letters", "record_dead_letters", "count_dead_letters"]

_LEDGER = DeadLetter.__table__
_CHUNK = 500  # offsets per IN (...) query
_MAX_DETAIL_CHARS = 1000
_MAX_REASON_CHARS = 64


class DeadLetterKey(NamedTuple):
    """One source record: its position and the sha256 hex of its key, value and headers."""

    topic: str
    partition: int
    offset: int
    record_sha256: str


class DeadLetterEntry(NamedTuple):
    """A dead letter written to the topic: the record's key, the reason code and its detail."""

    key: DeadLetterKey
    reason: str
    detail: str = ""


def _insert(database: Database):  # noqa: ANN202 - the dialect's insert construct
    if database.dialect_name == "postgresql":
        return postgresql.insert
    if database.dialect_name == "sqlite":
        return sqlite.insert
    raise StorageError(f"unsupported database {database.url!r}: linesight stores to SQLite or PostgreSQL only")


def _check(key: DeadLetterKey) -> DeadLetterKey:
    if not key.topic or key.partition < 0 or key.offset < 0 or len(key.record_sha256) != 64:
        raise InvalidRecordError(
            f"a dead-letter key needs a topic, partition >= 0, offset >= 0 and a 64-character sha256, got {key!r}"
        )
    return key


def recorded_dead_letters(database: Database, keys: Iterable[DeadLetterKey]) -> set[DeadLetterKey]:
    """Those of ``keys`` that are in the ledger (read only)."""
    by_partition: dict[tuple[str, int], set[DeadLetterKey]] = {}
    for key in keys:
        _check(key)
        by_partition.setdefault((key.topic, key.partition), set()).add(key)
    found: set[DeadLetterKey] = set()
    if not by_partition:
        return found
    with database.transaction() as connection:
        for (topic, partition), wanted in by_partition.items():
            offsets = sorted({key.offset for key in wanted})
            for start in range(0, len(offsets), _CHUNK):
                query = sa.select(_LEDGER.c.source_offset, _LEDGER.c.record_sha256).where(
                    _LEDGER.c.source_topic == topic,
                    _LEDGER.c.source_partition == partition,
                    _LEDGER.c.source_offset.in_(offsets[start : start + _CHUNK]),
                )
                for offset, digest in connection.execute(query):
                    key = DeadLetterKey(topic, partition, int(offset), digest)
                    if key in wanted:
                        found.add(key)
    return found


def record_dead_letters(database: Database, entries: Sequence[DeadLetterEntry], at: datetime | None = None) -> int:
    """Add ``entries`` to the ledger in one transaction (a key already there is skipped); returns rows inserted."""
    if at is not None and (at.tzinfo is None or at.utcoffset() is None):
        raise InvalidRecordError(f"dead_lettered_at must be timezone-aware, got naive {at.isoformat()!r}")
    at = at or datetime.now(UTC)
    rows: dict[DeadLetterKey, dict] = {}
    for entry in entries:
        key = _check(DeadLetterKey(*entry.key))
        if not entry.reason or len(entry.reason) > _MAX_REASON_CHARS:
            raise InvalidRecordError(f"a dead-letter reason must be 1-{_MAX_REASON_CHARS} characters, got {entry.reason!r}")
        rows.setdefault(key, {
            "source_topic": key.topic, "source_partition": key.partition, "source_offset": key.offset,
            "record_sha256": key.record_sha256, "reason": entry.reason,
            "detail": (entry.detail or "")[:_MAX_DETAIL_CHARS], "dead_lettered_at": at,
        })
    if not rows:
        return 0
    statement = (
        _insert(database)(_LEDGER)
        .on_conflict_do_nothing(
            index_elements=["source_topic", "source_partition", "source_offset", "record_sha256"]
        )
        .returning(_LEDGER.c.id)
    )
    with database.transaction(write=True) as connection:
        return len(connection.execute(statement, list(rows.values())).all())


def count_dead_letters(database: Database, *, topic: str | None = None) -> int:
    """Rows in the ledger (of one source topic when ``topic`` is given)."""
    query = sa.select(sa.func.count()).select_from(_LEDGER)
    if topic is not None:
        query = query.where(_LEDGER.c.source_topic == topic)
    with database.transaction() as connection:
        return int(connection.execute(query).scalar_one())
