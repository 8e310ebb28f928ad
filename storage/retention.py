"""Data retention: what a purge of old inspections would delete, the purge itself, storage per frame.

A purge deletes inspections captured before a cut-off together with their masks row (anomaly
map, mask, frame image) and chat turns, in chunks of ``batch_rows`` (one write transaction each,
so the stream's writers wait at most one chunk). Bank rows and files are never purged.

>>> from datetime import UTC, datetime
>>> from storage.db import Database
>>> db = Database("sqlite://"); _ = db.migrate()
>>> plan_purge(db, datetime(2026, 1, 1, tzinfo=UTC)).inspections
0
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from storage.db import Database
from storage.exceptions import InvalidRecordError
from storage.models import ChatTurn, Inspection, Mask

__all__ = ["PurgeGroup", "PurgePlan", "plan_purge", "purge", "StorageCost", "storage_cost", "vacuum"]

_I, _M, _C = Inspection.__table__, Mask.__table__, ChatTurn.__table__


@dataclass(frozen=True)
class PurgeGroup:
    """Inspections of one line and class that a purge deletes."""

    line_id: str
    product_class: str
    inspections: int
    oldest: datetime
    newest: datetime


@dataclass(frozen=True)
class PurgePlan:
    """Everything captured before ``before``: per line and class, and the totals."""

    before: datetime
    groups: tuple[PurgeGroup, ...]
    inspections: int
    chat_turns: int
    blob_bytes: int  # PNG maps, masks and frame images of those rows


def _cutoff(before: datetime) -> datetime:
    if before.tzinfo is None or before.utcoffset() is None:
        raise InvalidRecordError(f"purge cut-off must be timezone-aware, got naive {before.isoformat()!r}")
    return before


def plan_purge(database: Database, before: datetime) -> PurgePlan:
    """What :func:`purge` with the same cut-off deletes now (reads only)."""
    old = _I.c.captured_at < _cutoff(before)
    groups_query = (
        sa.select(_I.c.line_id, _I.c.product_class, sa.func.count(), sa.func.min(_I.c.captured_at),
                  sa.func.max(_I.c.captured_at))
        .where(old).group_by(_I.c.line_id, _I.c.product_class).order_by(_I.c.line_id, _I.c.product_class)
    )
    blobs = sa.func.coalesce(sa.func.sum(
        sa.func.length(_M.c.anomaly_map_png) + sa.func.length(_M.c.mask_png)
        + sa.func.coalesce(sa.func.length(_M.c.frame_image), 0)
    ), 0)
    with database.transaction() as connection:
        rows = connection.execute(groups_query).all()
        blob_bytes = connection.execute(sa.select(blobs).select_from(_M.join(_I, _M.c.inspection_id == _I.c.id))
                                        .where(old)).scalar_one()
        chat_turns = connection.execute(sa.select(sa.func.count()).select_from(_C.join(_I, _C.c.inspection_id == _I.c.id))
                                        .where(old)).scalar_one()
    type_ = Inspection.__table__.c.captured_at.type
    groups = tuple(
        PurgeGroup(line, cls, int(count), _aware(type_, oldest, database), _aware(type_, newest, database))
        for line, cls, count, oldest, newest in rows
    )
    return PurgePlan(before, groups, sum(g.inspections for g in groups), int(chat_turns), int(blob_bytes))


def _aware(type_: sa.types.TypeEngine, value: object, database: Database) -> datetime:
    """min()/max() come back as the raw column value on SQLite (text or naive): make them aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return type_.process_result_value(value, database.engine.dialect)  # type: ignore[attr-defined]


def purge(database: Database, before: datetime, *, batch_rows: int = 2000) -> int:
    """Delete inspections captured before ``before`` with their masks and chat turns; returns how many."""
    old = _I.c.captured_at < _cutoff(before)
    deleted = 0
    while True:
        with database.transaction(write=True) as connection:
            ids = list(connection.execute(sa.select(_I.c.id).where(old).order_by(_I.c.id).limit(batch_rows)).scalars())
            if not ids:
                return deleted
            connection.execute(sa.delete(_C).where(_C.c.inspection_id.in_(ids)))
            connection.execute(sa.delete(_M).where(_M.c.inspection_id.in_(ids)))
            connection.execute(sa.delete(_I).where(_I.c.id.in_(ids)))
        deleted += len(ids)


def vacuum(database: Database) -> bool:
    """Give the pages freed by a purge back to the file system (SQLite ``VACUUM``); False on other engines."""
    if database.dialect_name != "sqlite":
        return False  # PostgreSQL: autovacuum reuses the space
    raw = database.engine.raw_connection()
    try:
        raw.driver_connection.execute("VACUUM")
    finally:
        raw.close()
    return True


@dataclass(frozen=True)
class StorageCost:
    """Measured storage of the stored frames: rows and bytes per frame."""

    inspections: int
    rows_per_frame: float  # inspections + masks (+ chat turns) rows per inspection
    blob_bytes_per_frame: float  # anomaly map PNG + mask PNG + frame image
    frame_image_bytes_per_frame: float
    map_and_mask_bytes_per_frame: float
    file_bytes_per_frame: float | None  # SQLite file size / inspections (includes indexes); None elsewhere


def storage_cost(database: Database, file_bytes: int | None = None) -> StorageCost:
    """Rows and bytes per stored frame, from the database as it is now (``file_bytes``: the SQLite file's size)."""
    with database.transaction() as connection:
        inspections = connection.execute(sa.select(sa.func.count()).select_from(_I)).scalar_one()
        masks = connection.execute(sa.select(sa.func.count()).select_from(_M)).scalar_one()
        turns = connection.execute(sa.select(sa.func.count()).select_from(_C)).scalar_one()
        maps, frames = connection.execute(sa.select(
            sa.func.coalesce(sa.func.sum(sa.func.length(_M.c.anomaly_map_png) + sa.func.length(_M.c.mask_png)), 0),
            sa.func.coalesce(sa.func.sum(sa.func.length(_M.c.frame_image)), 0),
        )).one()
    n = max(int(inspections), 1)
    return StorageCost(
        inspections=int(inspections),
        rows_per_frame=(inspections + masks + turns) / n,
        blob_bytes_per_frame=(maps + frames) / n,
        frame_image_bytes_per_frame=frames / n,
        map_and_mask_bytes_per_frame=maps / n,
        file_bytes_per_frame=file_bytes / n if file_bytes is not None else None,
    )
