"""All reads and writes of linesight's SQL data; results are frozen rows (:mod:`storage.rows`).

The stream's write path is :meth:`Repository.upsert_inspections`: one transaction, ``INSERT ...
ON CONFLICT (frame_id) DO NOTHING RETURNING id, frame_id``, then the masks of the inserted rows.
A replayed batch (after a crash, before the Kafka commit) inserts nothing and returns ``[]``.

>>> from storage.db import Database
>>> repo = Repository(Database("sqlite://"))
>>> repo.database.migrate()  # the newest revision
'0007'
>>> repo.next_bank_version("bottle")
1
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from storage.banks import BankQueries
from storage.coldstart import ColdStartQueries
from storage.db import Database
from storage.exceptions import InvalidRecordError, NotFoundError, StorageError
from storage.models import CHAT_ROLES, VERDICT_SOURCES, ChatTurn, Inspection, Mask
from storage.records import InspectionRecord, png_size_px
from storage.rows import ChatTurnRow, ClassStats, InspectionRow, MaskRow

__all__ = ["Repository"]

_INSPECTIONS = Inspection.__table__
_MASKS = Mask.__table__
_CHAT = ChatTurn.__table__
_CHUNK_ROWS = 500  # rows per INSERT statement (SQLite allows 32766 bound values)
_MAX_LIMIT = 10_000
_INSPECTION_COLUMNS = [c for c in _INSPECTIONS.c if c.name != "id"]


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise InvalidRecordError(f"{name} must be timezone-aware, got naive {value.isoformat()!r}")
    return value


def _record_row(record: InspectionRecord) -> dict[str, Any]:
    return {
        "frame_id": record.frame_id,
        "line_id": record.line_id,
        "camera_id": record.camera_id,
        "product_class": record.product_class,
        "captured_at": record.captured_at,
        "received_at": record.received_at,
        "scored_at": record.scored_at,
        "score": float(record.score),
        "threshold": float(record.threshold),
        "is_anomalous": bool(record.is_anomalous),
        "positions": list(record.positions),
        "region_count": int(record.region_count),
        "verdict": record.verdict,
        "verdict_source": record.verdict_source,
        "verdict_note": record.verdict_note,
        "bank_version": int(record.bank_version),
        "latency_ms": float(record.latency_ms),
        "source_topic": record.source_topic,
        "source_partition": record.source_partition,
        "source_offset": record.source_offset,
        "alert_sent_at": None,
        "content_sha256": record.content_sha256,
        "regions": [dict(r) for r in record.regions],
        "frame_width_px": record.frame_width_px,
        "frame_height_px": record.frame_height_px,
        "score_source": record.score_source,
        "threshold_method": record.threshold_method,
    }


class Repository(BankQueries, ColdStartQueries):
    """Inspections, masks, banks (:class:`storage.banks.BankQueries`), cold starts
    (:class:`storage.coldstart.ColdStartQueries`) and chat turns on one :class:`Database`."""

    def __init__(self, database: Database, *, store_frames: str = "all") -> None:
        """``store_frames``: ``"all"`` keeps every frame image; ``"flagged"`` only those of flagged rows
        (the others keep their score, anomaly map and mask; ``LINESIGHT_STORE_FRAMES``)."""
        if store_frames not in ("all", "flagged"):
            raise StorageError(f"store_frames must be 'all' or 'flagged', got {store_frames!r}")
        self.database = database
        self.store_frames = store_frames
        if database.dialect_name == "postgresql":
            self._insert = postgresql.insert
        elif database.dialect_name == "sqlite":
            self._insert = sqlite.insert
        else:
            raise StorageError(
                f"unsupported database {database.url!r}: linesight stores to SQLite or PostgreSQL only"
            )

    # --- the stream's write path -------------------------------------------------------------
    def upsert_inspections(self, records: Sequence[InspectionRecord]) -> list[str]:
        """Insert records whose ``frame_id`` is new, with their masks; return those frame_ids (input order).

        One transaction for the whole batch; a frame_id already stored (or repeated in the batch)
        is skipped, so replaying a batch returns ``[]``.
        """
        unique: dict[str, InspectionRecord] = {}
        for record in records:
            unique.setdefault(record.frame_id, record)
        if not unique:
            return []
        rows = [_record_row(record) for record in unique.values()]
        statement = (
            self._insert(_INSPECTIONS)
            .on_conflict_do_nothing(index_elements=["frame_id"])
            .returning(_INSPECTIONS.c.id, _INSPECTIONS.c.frame_id)
        )
        inserted: dict[str, int] = {}
        with self.database.transaction(write=True) as connection:
            # executemany + RETURNING: SQLAlchemy's "insertmanyvalues" sends multi-row INSERTs from one
            # cached compiled statement (a .values(list) statement would be recompiled every batch).
            for inspection_id, frame_id in connection.execute(statement, rows):
                inserted[frame_id] = inspection_id
            if inserted:
                masks = []
                for frame_id, inspection_id in inserted.items():
                    record = unique[frame_id]
                    width_px, height_px = png_size_px(record.anomaly_map_png)
                    masks.append(
                        {
                            "inspection_id": inspection_id,
                            "anomaly_map_png": bytes(record.anomaly_map_png),
                            "mask_png": bytes(record.mask_png),
                            "width_px": width_px,
                            "height_px": height_px,
                            "frame_image": record.frame_image
                            if self.store_frames == "all" or record.is_anomalous else None,
                        }
                    )
                connection.execute(_MASKS.insert(), masks)
        return [frame_id for frame_id in unique if frame_id in inserted]

    def content_conflicts(self, records: Sequence[InspectionRecord], inserted: Iterable[str]) -> list[int]:
        """Indices of ``records`` whose frame_id is stored with another content hash (after an upsert).

        ``inserted`` is what :meth:`upsert_inspections` returned for them. Such a record reused a stored
        frame_id with other bytes: a conflict, not a redelivery. A record or stored row without a hash
        (stored before migration 0002) counts as a redelivery.
        """
        done = set(inserted)
        seen: set[str] = set()
        candidates: list[int] = []
        for index, record in enumerate(records):
            first_of_inserted = record.frame_id in done and record.frame_id not in seen
            seen.add(record.frame_id)
            if record.content_sha256 and not first_of_inserted:
                candidates.append(index)
        if not candidates:
            return []
        stored: dict[str, str | None] = {}
        with self.database.transaction() as connection:
            ids = list(dict.fromkeys(records[i].frame_id for i in candidates))
            for chunk in _chunks(ids, _CHUNK_ROWS):
                query = sa.select(_INSPECTIONS.c.frame_id, _INSPECTIONS.c.content_sha256).where(
                    _INSPECTIONS.c.frame_id.in_(chunk)
                )
                stored.update((frame_id, sha) for frame_id, sha in connection.execute(query))
        return [i for i in candidates if stored.get(records[i].frame_id) not in (None, records[i].content_sha256)]

    def pending_alerts(self, frame_ids: Sequence[str]) -> list[InspectionRow]:
        """Flagged rows among ``frame_ids`` whose alert was not sent yet (oldest id first)."""
        found: list[InspectionRow] = []
        with self.database.transaction() as connection:
            for chunk in _chunks(list(dict.fromkeys(frame_ids)), _CHUNK_ROWS):
                query = (
                    sa.select(_INSPECTIONS)
                    .where(_INSPECTIONS.c.frame_id.in_(chunk))
                    .where(_INSPECTIONS.c.is_anomalous.is_(True))
                    .where(_INSPECTIONS.c.alert_sent_at.is_(None))
                )
                found.extend(InspectionRow.from_mapping(r) for r in connection.execute(query).mappings())
        return sorted(found, key=lambda row: row.id)

    def mark_alerted(self, frame_ids: Sequence[str], at: datetime | None = None) -> int:
        """Record that alerts of ``frame_ids`` were sent at ``at`` (default now); returns rows newly marked."""
        at = _aware(at, "at") or datetime.now(UTC)
        marked = 0
        with self.database.transaction(write=True) as connection:
            for chunk in _chunks(list(dict.fromkeys(frame_ids)), _CHUNK_ROWS):
                result = connection.execute(
                    sa.update(_INSPECTIONS)
                    .where(_INSPECTIONS.c.frame_id.in_(chunk))
                    .where(_INSPECTIONS.c.alert_sent_at.is_(None))
                    .values(alert_sent_at=at)
                )
                marked += result.rowcount
        return marked

    def set_verdict(self, frame_id: str, text: str, source: str, note: str | None = None) -> InspectionRow:
        """Replace the verdict of a stored frame (e.g. by an accepted LLM sentence); returns the row."""
        if source not in VERDICT_SOURCES:
            raise InvalidRecordError(f"verdict source must be one of {VERDICT_SOURCES}, got {source!r}")
        with self.database.transaction(write=True) as connection:
            result = connection.execute(
                sa.update(_INSPECTIONS)
                .where(_INSPECTIONS.c.frame_id == frame_id)
                .values(verdict=text, verdict_source=source, verdict_note=note)
            )
            if result.rowcount == 0:
                raise NotFoundError(f"no inspection with frame_id {frame_id!r}")
            row = connection.execute(sa.select(_INSPECTIONS).where(_INSPECTIONS.c.frame_id == frame_id))
            return InspectionRow.from_mapping(row.mappings().one())

    # --- reads -------------------------------------------------------------------------------
    def get_inspection(self, inspection_id: int) -> InspectionRow | None:
        """The inspection with this id, or ``None``."""
        return self._one(_INSPECTIONS.c.id == inspection_id)

    def get_inspection_by_frame(self, frame_id: str) -> InspectionRow | None:
        """The inspection of this frame_id, or ``None``."""
        return self._one(_INSPECTIONS.c.frame_id == frame_id)

    def _one(self, condition: sa.ColumnElement[bool]) -> InspectionRow | None:
        with self.database.transaction() as connection:
            row = connection.execute(sa.select(_INSPECTIONS).where(condition)).mappings().first()
        return None if row is None else InspectionRow.from_mapping(row)

    def get_masks(self, inspection_id: int) -> MaskRow | None:
        """The stored map/mask PNGs of an inspection, or ``None``."""
        with self.database.transaction() as connection:
            row = (
                connection.execute(sa.select(_MASKS).where(_MASKS.c.inspection_id == inspection_id))
                .mappings()
                .first()
            )
        return None if row is None else MaskRow(**row)

    def history(
        self,
        *,
        line_id: str | None = None,
        camera_id: str | None = None,
        product_class: str | None = None,
        anomalous: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[InspectionRow]:
        """Inspections newest first (by id); ``since`` inclusive, ``until`` exclusive (captured_at).

        ``anomalous``: True flagged only, False normal only, None both. Page with ``before_id=rows[-1].id``.
        """
        if not 1 <= limit <= _MAX_LIMIT:
            raise InvalidRecordError(f"limit must be in 1..{_MAX_LIMIT}, got {limit}")
        query = sa.select(_INSPECTIONS).where(
            *self._filters(line_id=line_id, camera_id=camera_id, product_class=product_class, anomalous=anomalous,
                           since=since, until=until)
        )
        if before_id is not None:
            query = query.where(_INSPECTIONS.c.id < before_id)
        query = query.order_by(_INSPECTIONS.c.id.desc()).limit(limit)
        with self.database.transaction() as connection:
            return [InspectionRow.from_mapping(r) for r in connection.execute(query).mappings()]

    def iter_history(self, *, page_size: int = 1000, **filters: Any) -> Iterator[InspectionRow]:
        """Every inspection matching ``filters`` (as :meth:`history`), newest first, fetched page by page."""
        before_id = None
        while True:
            page = self.history(limit=page_size, before_id=before_id, **filters)
            yield from page
            if len(page) < page_size:
                return
            before_id = page[-1].id

    def count_inspections(
        self,
        *,
        line_id: str | None = None,
        camera_id: str | None = None,
        product_class: str | None = None,
        anomalous: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many inspections match (same filters as :meth:`history`)."""
        query = (
            sa.select(sa.func.count())
            .select_from(_INSPECTIONS)
            .where(*self._filters(line_id=line_id, camera_id=camera_id, product_class=product_class,
                                  anomalous=anomalous, since=since, until=until))
        )
        with self.database.transaction() as connection:
            return int(connection.execute(query).scalar_one())

    def recent_scores(self, product_class: str, limit: int) -> list[tuple[int, float]]:
        """``(bank_version, score)`` of the class's newest ``limit`` inspections, newest first (no images read).

        Self-calibration reads the stream's own scores through this (bounded by the class index).
        """
        if not 1 <= limit <= _MAX_LIMIT:
            raise InvalidRecordError(f"limit must be in 1..{_MAX_LIMIT}, got {limit}")
        c = _INSPECTIONS.c
        query = (sa.select(c.bank_version, c.score).where(c.product_class == product_class)
                 .order_by(c.id.desc()).limit(limit))
        with self.database.transaction() as connection:
            return [(int(version), float(score)) for version, score in connection.execute(query)]

    def stats_by_class(
        self, *, line_id: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, ClassStats]:
        """Per product class: total, flagged, mean score and mean latency (for the demo summary)."""
        c = _INSPECTIONS.c
        query = (
            sa.select(
                c.product_class,
                sa.func.count(),
                sa.func.sum(sa.case((c.is_anomalous.is_(True), 1), else_=0)),
                sa.func.avg(c.score),
                sa.func.avg(c.latency_ms),
            )
            .where(*self._filters(line_id=line_id, since=since, until=until))
            .group_by(c.product_class)
            .order_by(c.product_class)
        )
        with self.database.transaction() as connection:
            return {
                cls: ClassStats(
                    cls, int(total), int(flagged or 0), float(score or 0.0), float(latency or 0.0)
                )
                for cls, total, flagged, score, latency in connection.execute(query)
            }

    @staticmethod
    def _filters(
        *,
        line_id: str | None = None,
        camera_id: str | None = None,
        product_class: str | None = None,
        anomalous: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[sa.ColumnElement[bool]]:
        c = _INSPECTIONS.c
        conditions: list[sa.ColumnElement[bool]] = []
        if line_id is not None:
            conditions.append(c.line_id == line_id)
        if camera_id is not None:
            conditions.append(c.camera_id == camera_id)
        if product_class is not None:
            conditions.append(c.product_class == product_class)
        if anomalous is not None:
            conditions.append(c.is_anomalous.is_(bool(anomalous)))
        if _aware(since, "since") is not None:
            conditions.append(c.captured_at >= since)
        if _aware(until, "until") is not None:
            conditions.append(c.captured_at < until)
        return conditions

    # --- chat --------------------------------------------------------------------------------
    def add_chat_turn(self, inspection_id: int, role: str, text: str, source: str | None = None) -> ChatTurnRow:
        """Append a turn to an inspection's dialogue (``turn_index`` = previous + 1, from 0).

        ``source`` (assistant turns): ``"llm"`` when the LLM's own text is shown, ``"facts"`` when the
        deterministic facts answer replaced it.
        """
        if role not in CHAT_ROLES:
            raise InvalidRecordError(f"chat role must be one of {CHAT_ROLES}, got {role!r}")
        if source not in (None, "llm", "facts"):
            raise InvalidRecordError(f"chat turn source must be 'llm', 'facts' or None, got {source!r}")
        with self.database.transaction(write=True) as connection:
            # FOR UPDATE (PostgreSQL) serialises appends to one dialogue; SQLite holds the write lock.
            owner = connection.execute(
                sa.select(_INSPECTIONS.c.id).where(_INSPECTIONS.c.id == inspection_id).with_for_update()
            ).first()
            if owner is None:
                raise NotFoundError(f"no inspection with id {inspection_id!r} to add a chat turn to")
            last = connection.execute(
                sa.select(sa.func.max(_CHAT.c.turn_index)).where(_CHAT.c.inspection_id == inspection_id)
            ).scalar_one()
            values = {
                "inspection_id": inspection_id,
                "turn_index": 0 if last is None else int(last) + 1,
                "role": role,
                "text": text,
                "created_at": datetime.now(UTC),
                "source": source,
            }
            turn_id = connection.execute(_CHAT.insert().values(values).returning(_CHAT.c.id)).scalar_one()
        return ChatTurnRow(id=turn_id, **values)

    def chat_turns(self, inspection_id: int) -> list[ChatTurnRow]:
        """The dialogue of an inspection, in order."""
        query = sa.select(_CHAT).where(_CHAT.c.inspection_id == inspection_id).order_by(_CHAT.c.turn_index)
        with self.database.transaction() as connection:
            return [ChatTurnRow(**row) for row in connection.execute(query).mappings()]

    # --- the dead-letter ledger (storage/dead_letters.py) ---------------------------------------
    def recorded_dead_letters(self, keys: Iterable[Any]) -> set[Any]:
        """Those of ``keys`` (:class:`storage.dead_letters.DeadLetterKey`) already dead-lettered."""
        from storage import dead_letters

        return dead_letters.recorded_dead_letters(self.database, keys)

    def record_dead_letters(self, entries: Sequence[Any]) -> int:
        """Add written dead letters (:class:`storage.dead_letters.DeadLetterEntry`) to the ledger; rows inserted."""
        from storage import dead_letters

        return dead_letters.record_dead_letters(self.database, entries)

    # --- operator review: feedback and acknowledgements (storage/feedback.py) -------------------
    def set_feedback(
        self, frame_id: str, label: str, *, note: str | None = None, actor: str = "operator",
        at: datetime | None = None,
    ) -> Any:
        """Label a frame ``false_alarm`` or ``defect``; see :func:`storage.feedback.set_feedback`."""
        from storage import feedback

        return feedback.set_feedback(self.database, frame_id, label, note=note, actor=actor, at=at)

    def get_feedback(self, frame_id: str) -> Any:
        """The label in force of a frame (a :class:`storage.feedback.FeedbackRow`), or ``None``."""
        from storage import feedback

        return feedback.latest_feedback(self.database, [frame_id]).get(frame_id)

    def feedback_by_frame(self, frame_ids: Sequence[str]) -> dict[str, Any]:
        """The label in force of each frame that has one (for a page of inspections)."""
        from storage import feedback

        return feedback.latest_feedback(self.database, frame_ids)

    def feedback_history(self, frame_id: str) -> list[Any]:
        """Every label given to a frame, oldest first."""
        from storage import feedback

        return feedback.feedback_history(self.database, frame_id)

    def feedback_for_class(self, product_class: str, label: str) -> list[str]:
        """frame_ids of a class whose label in force is ``label``, oldest label first."""
        from storage import feedback

        return feedback.feedback_for_class(self.database, product_class, label)

    def labelled_frames(self, product_class: str, label: str = "false_alarm", *, after_feedback_id: int = 0) -> list[Any]:
        """Labelled frames of a class with their stored frame bytes: the input of a bank rebuild from
        false alarms; see :func:`storage.feedback.labelled_frames`."""
        from storage import feedback

        return feedback.labelled_frames(self.database, product_class, label, after_feedback_id=after_feedback_id)

    def acknowledge(self, frame_id: str, *, actor: str = "operator", at: datetime | None = None) -> Any:
        """Acknowledge a frame's alert (the first acknowledgement stands); an :class:`storage.feedback.AckRow`."""
        from storage import feedback

        return feedback.acknowledge(self.database, frame_id, actor=actor, at=at)

    def get_acknowledgement(self, frame_id: str) -> Any:
        """The acknowledgement of a frame, or ``None``."""
        from storage import feedback

        return feedback.acknowledgements(self.database, [frame_id]).get(frame_id)

    def acknowledgements_by_frame(self, frame_ids: Sequence[str]) -> dict[str, Any]:
        """The acknowledgement of each frame that has one."""
        from storage import feedback

        return feedback.acknowledgements(self.database, frame_ids)

    # --- line screen aggregates (storage/line_stats.py) -----------------------------------------
    def line_status(
        self, *, now: datetime, rate_window_s: float = 60.0, share_window_s: float = 3600.0,
        down_after_s: float = 30.0,
    ) -> list[Any]:
        """Per-line tiles (:class:`storage.line_stats.LineStatus`); see :func:`storage.line_stats.line_status`."""
        from storage import line_stats

        return line_stats.line_status(self.database, now=now, rate_window_s=rate_window_s,
                                      share_window_s=share_window_s, down_after_s=down_after_s)

    def trend(self, *, since: datetime, until: datetime, bucket_s: int, line_id: str | None = None) -> list[Any]:
        """Frames and flagged per bucket, line and class (:class:`storage.line_stats.TrendBucket`)."""
        from storage import line_stats

        return line_stats.trend(self.database, since=since, until=until, bucket_s=bucket_s, line_id=line_id)
