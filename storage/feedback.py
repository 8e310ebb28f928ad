"""Operator review in SQL: feedback labels (false alarm / confirmed defect) and acknowledgements.

Feedback is append-only (an audit trail); the newest row of a frame is the label in force, and
setting the label and note a frame already has adds nothing (idempotent). An acknowledgement is
one row per frame: the first one stands, acknowledging again returns it unchanged.

The consumer that turns false alarms into a new bank version reads :func:`labelled_frames`
(through :meth:`storage.repository.Repository.labelled_frames`): the frames whose label in
force is ``false_alarm`` for a class, with the stored frame bytes, oldest label first.

>>> from storage.db import Database
>>> from storage.repository import Repository
>>> repo = Repository(Database("sqlite://")); _ = repo.database.migrate()
>>> repo.feedback_for_class("brick", "false_alarm")
[]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from storage.exceptions import InvalidRecordError, NotFoundError
from storage.models import FEEDBACK_LABELS, Acknowledgement, Feedback, Inspection, Mask

if TYPE_CHECKING:
    from storage.db import Database

__all__ = [
    "FEEDBACK_LABELS",
    "MAX_NOTE_CHARS",
    "MAX_ACTOR_CHARS",
    "FeedbackRow",
    "AckRow",
    "LabelledFrame",
    "check_label",
    "set_feedback",
    "latest_feedback",
    "feedback_history",
    "feedback_for_class",
    "labelled_frames",
    "acknowledge",
    "acknowledgements",
]

MAX_NOTE_CHARS = 2000
MAX_ACTOR_CHARS = 128
_FEEDBACK = Feedback.__table__
_ACKS = Acknowledgement.__table__
_INSPECTIONS = Inspection.__table__
_MASKS = Mask.__table__
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One operator label of a frame (``label`` in :data:`FEEDBACK_LABELS`)."""

    id: int
    frame_id: str
    label: str
    note: str | None
    actor: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AckRow:
    """The acknowledgement of a frame's alert."""

    frame_id: str
    acknowledged_at: datetime
    acknowledged_by: str


@dataclass(frozen=True, slots=True)
class LabelledFrame:
    """A frame whose label in force is ``label``, with what a bank rebuild or calibration needs."""

    feedback_id: int
    frame_id: str
    inspection_id: int
    product_class: str
    label: str
    score: float
    threshold: float
    bank_version: int
    labelled_at: datetime
    frame_image: bytes | None = field(repr=False)  # encoded JPEG/PNG as received; None if not kept


def check_label(label: str) -> str:
    """``label`` if it is one of :data:`FEEDBACK_LABELS`; ``false-alarm`` is read as ``false_alarm``.

    >>> check_label("false-alarm")
    'false_alarm'
    """
    normalised = label.strip().lower().replace("-", "_") if isinstance(label, str) else label
    if normalised not in FEEDBACK_LABELS:
        raise InvalidRecordError(f"feedback label must be one of {', '.join(FEEDBACK_LABELS)}, got {label!r}")
    return normalised


def _check_text(value: str | None, name: str, limit: int, *, required: bool = False) -> str | None:
    if value is None or not str(value).strip():
        if required:
            raise InvalidRecordError(f"{name} must not be empty, got {value!r}")
        return None
    value = str(value).strip()
    if len(value) > limit or "\x00" in value:
        raise InvalidRecordError(f"{name} must be 1-{limit} characters without NUL, got {value[:40]!r}...")
    return value


def _now(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidRecordError(f"at must be timezone-aware, got naive {at.isoformat()!r}")
    return at


def _latest_ids(frame_ids: Sequence[str] | None = None) -> sa.Subquery:
    query = sa.select(sa.func.max(_FEEDBACK.c.id).label("id")).group_by(_FEEDBACK.c.frame_id)
    if frame_ids is not None:
        query = query.where(_FEEDBACK.c.frame_id.in_(frame_ids))
    return query.subquery()


def set_feedback(
    database: Database, frame_id: str, label: str, *, note: str | None = None, actor: str = "operator",
    at: datetime | None = None,
) -> FeedbackRow:
    """Label a stored frame; returns the label in force (the existing row when label and note are unchanged).

    ``false_alarm`` needs a flagged frame (InvalidRecordError naming it); ``defect`` may mark a frame
    the detector missed. NotFoundError for an unknown ``frame_id``.
    """
    label = check_label(label)
    note = _check_text(note, "note", MAX_NOTE_CHARS)
    actor = _check_text(actor, "actor", MAX_ACTOR_CHARS, required=True)
    at = _now(at)
    with database.transaction(write=True) as connection:
        flagged = connection.execute(
            sa.select(_INSPECTIONS.c.is_anomalous).where(_INSPECTIONS.c.frame_id == frame_id).with_for_update()
        ).first()
        if flagged is None:
            raise NotFoundError(f"no inspection with frame_id {frame_id!r} to label")
        if label == "false_alarm" and not flagged[0]:
            raise InvalidRecordError(
                f"frame {frame_id!r} was not flagged, so it cannot be a false alarm (label it 'defect' if it was missed)"
            )
        latest = connection.execute(
            sa.select(_FEEDBACK).where(_FEEDBACK.c.frame_id == frame_id).order_by(_FEEDBACK.c.id.desc()).limit(1)
        ).mappings().first()
        if latest is not None and latest["label"] == label and latest["note"] == note:
            return FeedbackRow(**latest)
        values = {"frame_id": frame_id, "label": label, "note": note, "actor": actor, "created_at": at}
        new_id = connection.execute(_FEEDBACK.insert().values(values).returning(_FEEDBACK.c.id)).scalar_one()
    return FeedbackRow(id=new_id, **values)


def latest_feedback(database: Database, frame_ids: Sequence[str]) -> dict[str, FeedbackRow]:
    """The label in force of each of ``frame_ids`` that has one."""
    found: dict[str, FeedbackRow] = {}
    unique = list(dict.fromkeys(frame_ids))
    with database.transaction() as connection:
        for start in range(0, len(unique), _CHUNK):
            latest = _latest_ids(unique[start : start + _CHUNK])
            query = sa.select(_FEEDBACK).join(latest, _FEEDBACK.c.id == latest.c.id)
            for row in connection.execute(query).mappings():
                found[row["frame_id"]] = FeedbackRow(**row)
    return found


def feedback_history(database: Database, frame_id: str) -> list[FeedbackRow]:
    """Every label ever given to a frame, oldest first."""
    query = sa.select(_FEEDBACK).where(_FEEDBACK.c.frame_id == frame_id).order_by(_FEEDBACK.c.id)
    with database.transaction() as connection:
        return [FeedbackRow(**row) for row in connection.execute(query).mappings()]


def _labelled_query(product_class: str, label: str, after_feedback_id: int) -> sa.Select:
    latest = _latest_ids()
    return (
        sa.select(_FEEDBACK, _INSPECTIONS.c.id.label("inspection_id"), _INSPECTIONS.c.product_class,
                  _INSPECTIONS.c.score, _INSPECTIONS.c.threshold, _INSPECTIONS.c.bank_version)
        .join(latest, _FEEDBACK.c.id == latest.c.id)
        .join(_INSPECTIONS, _INSPECTIONS.c.frame_id == _FEEDBACK.c.frame_id)
        .where(_INSPECTIONS.c.product_class == product_class, _FEEDBACK.c.label == check_label(label),
               _FEEDBACK.c.id > after_feedback_id)
        .order_by(_FEEDBACK.c.id)
    )


def feedback_for_class(database: Database, product_class: str, label: str) -> list[str]:
    """frame_ids of ``product_class`` whose label in force is ``label``, oldest label first."""
    query = _labelled_query(product_class, label, 0)
    with database.transaction() as connection:
        return [row["frame_id"] for row in connection.execute(query).mappings()]


def labelled_frames(
    database: Database, product_class: str, label: str = "false_alarm", *, after_feedback_id: int = 0
) -> list[LabelledFrame]:
    """Frames of ``product_class`` whose label in force is ``label``, with their stored frame bytes.

    For the bank rebuild from false alarms: pass the largest ``feedback_id`` already used as
    ``after_feedback_id`` to get only the labels given since.
    """
    labelled = _labelled_query(product_class, label, after_feedback_id).subquery()
    query = (
        sa.select(labelled, _MASKS.c.frame_image)
        .outerjoin(_MASKS, _MASKS.c.inspection_id == labelled.c.inspection_id)
        .order_by(labelled.c.id)
    )
    with database.transaction() as connection:
        return [
            LabelledFrame(
                feedback_id=row["id"], frame_id=row["frame_id"], inspection_id=row["inspection_id"],
                product_class=row["product_class"], label=row["label"], score=float(row["score"]),
                threshold=float(row["threshold"]), bank_version=int(row["bank_version"]),
                labelled_at=row["created_at"], frame_image=row["frame_image"],
            )
            for row in connection.execute(query).mappings()
        ]


def acknowledge(database: Database, frame_id: str, *, actor: str = "operator", at: datetime | None = None) -> AckRow:
    """Acknowledge a frame's alert; the first acknowledgement stands (returned again on a repeat)."""
    actor = _check_text(actor, "actor", MAX_ACTOR_CHARS, required=True)
    at = _now(at)
    with database.transaction(write=True) as connection:
        exists = connection.execute(sa.select(_INSPECTIONS.c.id).where(_INSPECTIONS.c.frame_id == frame_id)).first()
        if exists is None:
            raise NotFoundError(f"no inspection with frame_id {frame_id!r} to acknowledge")
        values = {"frame_id": frame_id, "acknowledged_at": at, "acknowledged_by": actor}
        insert = postgresql.insert if database.dialect_name == "postgresql" else sqlite.insert
        connection.execute(insert(_ACKS).values(values).on_conflict_do_nothing(index_elements=["frame_id"]))
        stored = connection.execute(sa.select(_ACKS).where(_ACKS.c.frame_id == frame_id)).mappings().one()
    return AckRow(**stored)


def acknowledgements(database: Database, frame_ids: Sequence[str]) -> dict[str, AckRow]:
    """The acknowledgement of each of ``frame_ids`` that has one."""
    found: dict[str, AckRow] = {}
    unique = list(dict.fromkeys(frame_ids))
    with database.transaction() as connection:
        for start in range(0, len(unique), _CHUNK):
            query = sa.select(_ACKS).where(_ACKS.c.frame_id.in_(unique[start : start + _CHUNK]))
            for row in connection.execute(query).mappings():
                found[row["frame_id"]] = AckRow(**row)
    return found
