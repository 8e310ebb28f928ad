"""JSON shapes of the API (they are the OpenAPI spec) and converters from storage rows.

>>> from datetime import UTC, datetime
>>> ChatQuestion(question="Where is the defect?").question
'Where is the defect?'
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "Inspection",
    "InspectionPage",
    "FeedbackLabel",
    "Acknowledgement",
    "FeedbackIn",
    "AckIn",
    "ChatQuestion",
    "ChatTurn",
    "ChatTurns",
    "ChatAnswer",
    "Verdict",
    "Bank",
    "BankList",
    "BankChange",
    "ClassSummary",
    "Summary",
    "Health",
    "inspection_json",
    "bank_json",
    "turn_json",
]


class FeedbackLabel(BaseModel):
    """An operator's label of an inspection: ``false_alarm`` or ``defect`` (the newest one is in force)."""

    label: str
    note: str | None
    actor: str
    created_at: datetime


class Acknowledgement(BaseModel):
    """The acknowledgement of an inspection's alert (the first one stands)."""

    acknowledged_by: str
    acknowledged_at: datetime


class FeedbackIn(BaseModel):
    """A label for a stored inspection."""

    label: str = Field(description="false_alarm (a flagged frame that is fine) or defect (confirmed or missed)")
    note: str | None = Field(None, max_length=2000, description="free text kept with the label")
    actor: str | None = Field(None, max_length=128, description="who labels it (default 'api')")


class AckIn(BaseModel):
    """Who acknowledges an inspection's alert."""

    actor: str | None = Field(None, max_length=128, description="who acknowledges it (default 'api')")


class Inspection(BaseModel):
    """One stored inspection with links to its pictures."""

    id: int
    frame_id: str
    line_id: str
    camera_id: str
    product_class: str
    captured_at: datetime
    received_at: datetime
    scored_at: datetime
    score: float
    threshold: float
    is_anomalous: bool
    positions: list[str]
    region_count: int
    regions: list[dict[str, Any]] = Field(
        default_factory=list, description="full-frame pixel boxes {x, y, width, height, area_px, position}, largest first"
    )
    frame_width_px: int | None = None
    frame_height_px: int | None = None
    verdict: str
    verdict_source: str
    verdict_note: str | None
    bank_version: int
    score_source: str | None = Field(
        None, description="what scored the frame: 'bank', 'zero-shot' or 'cold-start' (null for older rows)")
    threshold_method: str | None = Field(
        None, description="how the threshold was set, e.g. 'balanced-accuracy-midpoint', 'cold-start median+3MAD of 64'")
    latency_ms: float
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    alert_sent_at: datetime | None
    feedback: FeedbackLabel | None = Field(None, description="the operator's label in force, if any")
    acknowledgement: Acknowledgement | None = Field(None, description="who acknowledged the alert, and when")
    links: dict[str, str]


class InspectionPage(BaseModel):
    """A page of inspections, newest first; pass ``next_cursor`` as ``before_id`` for the next page."""

    items: list[Inspection]
    next_cursor: int | None = Field(description="before_id of the next page; null on the last page")


class ChatQuestion(BaseModel):
    """An operator's question about one inspection."""

    question: str = Field(
        min_length=1, max_length=2000, pattern=r"^[^\x00]*\S[^\x00]*$", description="free text, 1-2000 characters"
    )


class ChatTurn(BaseModel):
    """One turn of the dialogue about an inspection."""

    id: int
    inspection_id: int
    turn_index: int
    role: str
    text: str
    created_at: datetime
    source: str | None = None  # assistant turns: "llm" (the LLM's own text) or "facts" (the facts answer)


class ChatTurns(BaseModel):
    """The stored dialogue of an inspection, in order."""

    turns: list[ChatTurn]


class ChatAnswer(BaseModel):
    """The answer and the turns this question added."""

    answer: str
    source: str | None = None  # "llm": the LLM's own text; "facts": the facts answer replaced a degenerate one
    turns: list[ChatTurn]


class Verdict(BaseModel):
    """The result of ``POST /api/inspect`` (nothing is stored)."""

    product_class: str
    bank_version: int
    is_anomalous: bool
    score: float
    threshold: float
    positions: list[str]
    region_count: int
    verdict: str
    latency_ms: float


class Bank(BaseModel):
    """A registered memory-bank version."""

    product_class: str
    version: int
    key: str
    active: bool
    shots: int
    encoder: str
    sha256: str
    calibration: dict[str, Any]
    created_at: datetime
    reference_frames: list[str] | None = Field(
        None, description="the frames the references came from, when known (bank auto, in-stream cold start)")
    calibrated_from: int | None = Field(
        None, description="the version whose calibration this one refined or overrode (calibration.source_version)")


class ColdStart(BaseModel):
    """A class the stream scores from its first frames (mutual scoring) until they are promoted to a bank."""

    product_class: str
    state: str = Field(description="'scoring', 'promoted' or 'cancelled'")
    frames: int = Field(description="promoted once the stream has scored this many frames of the class")
    shots: int = Field(description="the most normal of them become the bank's references")
    frames_scored: int = Field(description="cold-start results stored so far")
    registered_by: str
    registered_at: datetime
    promoted_version: int | None
    detail: str | None


class ColdStartRequest(BaseModel):
    """Register a class for cold start in the running stream (defaults: LINESIGHT_COLDSTART_FRAMES / _SHOTS)."""

    frames: int | None = Field(None, ge=4, le=100_000)
    shots: int | None = Field(None, ge=1, le=1000)


class BankList(BaseModel):
    """All registered bank versions, by class then version, and the classes in cold start."""

    banks: list[Bank]
    cold_starts: list[ColdStart] = Field(default_factory=list)


class BankChange(BaseModel):
    """A bank that was built or activated, and when the stream uses it."""

    bank: Bank
    message: str
    effective_within_s: float | None


class ClassSummary(BaseModel):
    """Counts of one product class."""

    product_class: str
    total: int
    flagged: int
    mean_score: float
    mean_latency_ms: float


class Summary(BaseModel):
    """Per-class counts over the filtered inspections."""

    classes: list[ClassSummary]


class Health(BaseModel):
    """Overall status and the status of each part (broker, database, stream)."""

    status: str
    parts: dict[str, dict[str, Any]]


_REVIEW_FIELDS = ("links", "feedback", "acknowledgement")


def inspection_json(row: Any, feedback: Any | None = None, ack: Any | None = None) -> dict[str, Any]:
    """The :class:`Inspection` dict of an :class:`~storage.rows.InspectionRow`, with its
    :class:`~storage.feedback.FeedbackRow` and :class:`~storage.feedback.AckRow` when given."""
    base = f"/api/inspections/{row.id}"
    fields = {name: getattr(row, name) for name in Inspection.model_fields if name not in _REVIEW_FIELDS}
    fields["positions"] = list(row.positions)
    fields["regions"] = [dict(r) for r in row.regions]
    fields["feedback"] = None if feedback is None else {
        "label": feedback.label, "note": feedback.note, "actor": feedback.actor, "created_at": feedback.created_at}
    fields["acknowledgement"] = None if ack is None else {
        "acknowledged_by": ack.acknowledged_by, "acknowledged_at": ack.acknowledged_at}
    fields["links"] = {"self": base, "overlay": f"{base}/overlay.png", "mask": f"{base}/mask.png",
                       "frame": f"{base}/frame", "heat": f"{base}/heat.png", "chat": f"{base}/chat",
                       "feedback": f"{base}/feedback", "ack": f"{base}/ack"}
    return fields


def bank_json(row: Any) -> dict[str, Any]:
    """The :class:`Bank` dict of a :class:`~storage.rows.BankRow` (the server's file path is left out)."""
    return {
        "product_class": row.product_class,
        "version": row.version,
        "key": row.key,
        "active": row.active,
        "shots": row.shots,
        "encoder": row.encoder,
        "sha256": row.sha256,
        "calibration": dict(row.calibration),
        "created_at": row.created_at,
        "reference_frames": None if row.reference_frames is None else list(row.reference_frames),
        "calibrated_from": row.calibration.get("source_version"),
    }


def cold_start_json(row: Any, frames_scored: int) -> dict[str, Any]:
    """The :class:`ColdStart` dict of a :class:`~storage.coldstart.ColdStartRow`."""
    return {name: getattr(row, name) for name in ColdStart.model_fields if name != "frames_scored"} | {
        "frames_scored": frames_scored}


def turn_json(turn: Any) -> dict[str, Any]:
    """The :class:`ChatTurn` dict of a :class:`~storage.rows.ChatTurnRow`."""
    return {name: getattr(turn, name) for name in ChatTurn.model_fields}
