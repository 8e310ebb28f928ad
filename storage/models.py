"""SQLAlchemy 2 declarative models: inspections, their masks, memory banks, chat turns, review and dead letters.

The schema itself is created by the Alembic migrations in ``storage/migrations`` (never by
``create_all`` in production); these models describe it for queries and for the test that
compares the migrated schema with the models.

All timestamps are timezone-aware UTC on the Python side (:class:`UTCDateTime`): PostgreSQL
stores ``timestamptz``, SQLite stores naive UTC text, and reads come back with ``tzinfo=UTC``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from storage.exceptions import InvalidRecordError

__all__ = [
    "Base",
    "UTCDateTime",
    "Inspection",
    "Mask",
    "Bank",
    "ChatTurn",
    "VERDICT_SOURCES",
    "CHAT_ROLES",
    "Feedback",
    "Acknowledgement",
    "FEEDBACK_LABELS",
    "DeadLetter",
    "ColdStart",
    "SCORE_SOURCES",
    "COLD_START_STATES",
]

VERDICT_SOURCES = ("template", "llm")
SCORE_SOURCES = ("bank", "zero-shot", "cold-start")  # what scored a frame (migration 0007)
COLD_START_STATES = ("scoring", "promoted", "cancelled")
CHAT_ROLES = ("operator", "assistant")

# 64-bit ids on PostgreSQL; SQLite needs exactly INTEGER PRIMARY KEY for its rowid alias.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; a naive value is refused (InvalidRecordError naming it)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRecordError(f"timestamps must be timezone-aware, got naive {value.isoformat()!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the linesight schema."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON(), list[str]: sa.JSON()}


class Inspection(Base):
    """One scored frame; ``frame_id`` is the idempotency key of the stream's upsert."""

    __tablename__ = "inspections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    frame_id: Mapped[str] = mapped_column(sa.String(128))
    line_id: Mapped[str] = mapped_column(sa.String(64))
    camera_id: Mapped[str] = mapped_column(sa.String(64))
    product_class: Mapped[str] = mapped_column(sa.String(64))
    captured_at: Mapped[datetime]
    received_at: Mapped[datetime]
    scored_at: Mapped[datetime]
    score: Mapped[float] = mapped_column(sa.Float)
    threshold: Mapped[float] = mapped_column(sa.Float)
    is_anomalous: Mapped[bool] = mapped_column(sa.Boolean)
    positions: Mapped[list[str]]  # 3x3 names, largest region first
    region_count: Mapped[int] = mapped_column(sa.Integer)
    verdict: Mapped[str] = mapped_column(sa.Text)
    verdict_source: Mapped[str] = mapped_column(sa.String(16))  # "template" | "llm"
    verdict_note: Mapped[str | None] = mapped_column(sa.Text)  # e.g. why an LLM verdict was rejected
    bank_version: Mapped[int] = mapped_column(sa.Integer)
    latency_ms: Mapped[float] = mapped_column(sa.Float)  # capture -> scored/stored
    source_topic: Mapped[str | None] = mapped_column(sa.String(255))
    source_partition: Mapped[int | None] = mapped_column(sa.Integer)
    source_offset: Mapped[int | None] = mapped_column(sa.BigInteger)
    alert_sent_at: Mapped[datetime | None]
    # sha256 hex of the frame's bytes (migration 0002): same frame_id + other bytes = a conflict
    content_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    regions: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)  # full-frame boxes, largest first
    frame_width_px: Mapped[int | None] = mapped_column(sa.Integer)
    frame_height_px: Mapped[int | None] = mapped_column(sa.Integer)
    # what scored the frame (SCORE_SOURCES) and how its threshold was set (migration 0007; NULL before)
    score_source: Mapped[str | None] = mapped_column(sa.String(16))
    threshold_method: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        sa.UniqueConstraint("frame_id", name="uq_inspections_frame_id"),
        sa.CheckConstraint("verdict_source IN ('template', 'llm')", name="ck_inspections_verdict_source"),
        sa.Index("ix_inspections_line_id", "line_id", "id"),
        sa.Index("ix_inspections_camera_id", "camera_id", "id"),
        sa.Index("ix_inspections_product_class", "product_class", "id"),
        sa.Index("ix_inspections_is_anomalous", "is_anomalous", "id"),
        sa.Index("ix_inspections_captured_at", "captured_at"),
    )


class Mask(Base):
    """The anomaly map (8-bit PNG of the float map), the binary mask PNG and the frame as received."""

    __tablename__ = "masks"

    inspection_id: Mapped[int] = mapped_column(
        BigId,
        sa.ForeignKey("inspections.id", ondelete="CASCADE", name="fk_masks_inspection_id"),
        primary_key=True,
    )
    anomaly_map_png: Mapped[bytes] = mapped_column(sa.LargeBinary)
    mask_png: Mapped[bytes] = mapped_column(sa.LargeBinary)
    width_px: Mapped[int] = mapped_column(sa.Integer)
    height_px: Mapped[int] = mapped_column(sa.Integer)
    frame_image: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # encoded JPEG/PNG, optional


class Bank(Base):
    """A registered memory-bank version of a product class; at most one active per class."""

    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    product_class: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int] = mapped_column(sa.Integer)
    path: Mapped[str] = mapped_column(sa.Text)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    shots: Mapped[int] = mapped_column(sa.Integer)
    encoder: Mapped[str] = mapped_column(sa.String(64))
    calibration: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # the frames the shots came from when known (bank auto, in-stream cold start): the operator can veto them
    reference_frames: Mapped[list[str] | None] = mapped_column(sa.JSON)

    __table_args__ = (
        sa.UniqueConstraint("product_class", "version", name="uq_banks_class_version"),
        # Partial unique index: at most one active version per class (SQLite and PostgreSQL).
        sa.Index(
            "uq_banks_one_active",
            "product_class",
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        ),
    )


class ChatTurn(Base):
    """One turn of the operator/assistant dialogue about an inspection."""

    __tablename__ = "chat_turns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("inspections.id", ondelete="CASCADE", name="fk_chat_turns_inspection_id")
    )
    turn_index: Mapped[int] = mapped_column(sa.Integer)
    role: Mapped[str] = mapped_column(sa.String(16))  # "operator" | "assistant"
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    source: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)  # assistant: "llm" | "facts"

    __table_args__ = (
        sa.UniqueConstraint("inspection_id", "turn_index", name="uq_chat_turns_inspection_turn"),
        sa.CheckConstraint("role IN ('operator', 'assistant')", name="ck_chat_turns_role"),
    )


# --- operator review: feedback labels and acknowledgements ------------
FEEDBACK_LABELS = ("false_alarm", "defect")


class Feedback(Base):
    """An operator's label of a stored frame; append-only, the newest row per frame is the label in force."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    frame_id: Mapped[str] = mapped_column(
        sa.String(128),
        sa.ForeignKey("inspections.frame_id", ondelete="CASCADE", name="fk_feedback_frame_id"),
    )
    label: Mapped[str] = mapped_column(sa.String(16))  # "false_alarm" | "defect"
    note: Mapped[str | None] = mapped_column(sa.Text)
    actor: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime]

    __table_args__ = (
        sa.CheckConstraint("label IN ('false_alarm', 'defect')", name="ck_feedback_label"),
        sa.Index("ix_feedback_frame_id", "frame_id", "id"),
    )


class Acknowledgement(Base):
    """An operator saw a frame's alert; one row per frame, the first acknowledgement stands."""

    __tablename__ = "acknowledgements"

    frame_id: Mapped[str] = mapped_column(
        sa.String(128),
        sa.ForeignKey("inspections.frame_id", ondelete="CASCADE", name="fk_acknowledgements_frame_id"),
        primary_key=True,
    )
    acknowledged_at: Mapped[datetime]
    acknowledged_by: Mapped[str] = mapped_column(sa.String(128))


# --- the dead-letter ledger: a replayed record is not dead-lettered twice ---------------------
class DeadLetter(Base):
    """A source record the stream wrote to the dead-letter topic (one row per record, never updated).

    The key is the record's position and digest: a replay of the same record finds its row; another
    record at a reused position (a topic deleted and recreated, a restarted memory-only broker) does not.
    """

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_topic: Mapped[str] = mapped_column(sa.String(255))
    source_partition: Mapped[int] = mapped_column(sa.Integer)
    source_offset: Mapped[int] = mapped_column(sa.BigInteger)
    record_sha256: Mapped[str] = mapped_column(sa.String(64))  # of the record's key, value and headers
    reason: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[str | None] = mapped_column(sa.Text)
    dead_lettered_at: Mapped[datetime]

    __table_args__ = (
        sa.UniqueConstraint(
            "source_topic", "source_partition", "source_offset", "record_sha256", name="uq_dead_letters_source"
        ),
        sa.Index("ix_dead_letters_dead_lettered_at", "dead_lettered_at"),
    )


# --- cold start: classes scored from their first frames until promoted to a bank ---------------
class ColdStart(Base):
    """A class the stream scores from its first frames (mutual scoring) until they are promoted to a bank."""

    __tablename__ = "cold_starts"

    product_class: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    frames: Mapped[int] = mapped_column(sa.Integer)  # N: promoted once the stream has scored this many
    shots: Mapped[int] = mapped_column(sa.Integer)  # K: the most normal of them become the references
    state: Mapped[str] = mapped_column(sa.String(16))  # COLD_START_STATES
    registered_by: Mapped[str] = mapped_column(sa.String(16))  # "setting" | "cli" | "api"
    registered_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    promoted_version: Mapped[int | None] = mapped_column(sa.Integer)
    detail: Mapped[str | None] = mapped_column(sa.Text)  # the last promotion problem, or what was promoted

    __table_args__ = (
        sa.CheckConstraint("state IN ('scoring', 'promoted', 'cancelled')", name="ck_cold_starts_state"),
    )
