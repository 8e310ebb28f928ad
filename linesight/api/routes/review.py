"""Operator review of a stored inspection: feedback labels and acknowledgement (write token required)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from linesight.api.auth import AUTH_RESPONSES, require_token
from linesight.api.context import ApiContext, get_context
from linesight.api.errors import ERROR_RESPONSES, ApiError
from linesight.api.routes.inspections import InspectionId
from linesight.api.schemas import AckIn, FeedbackIn, Inspection, inspection_json

__all__ = ["router", "reviewed_json"]

router = APIRouter(prefix="/api/inspections", tags=["review"], responses={**ERROR_RESPONSES, **AUTH_RESPONSES})

DEFAULT_ACTOR = "api"


def reviewed_json(context: ApiContext, row: Any) -> dict[str, Any]:
    """The inspection JSON of ``row`` with its label in force and its acknowledgement."""
    repository = context.repository
    return inspection_json(row, repository.get_feedback(row.frame_id), repository.get_acknowledgement(row.frame_id))


def _row(context: ApiContext, inspection_id: int) -> Any:
    row = context.repository.get_inspection(inspection_id)
    if row is None:
        raise ApiError(404, f"no inspection with id {inspection_id}")
    return row


@router.post("/{inspection_id}/feedback", response_model=Inspection, dependencies=[Depends(require_token)],
             summary="Label an inspection a false alarm or a confirmed defect")
def post_feedback(
    inspection_id: InspectionId, body: Annotated[FeedbackIn, Body()],
    context: Annotated[ApiContext, Depends(get_context)],
) -> dict[str, Any]:
    """``false_alarm`` (a flagged frame that is fine: it joins the class's normal references at the next
    bank rebuild) or ``defect`` (confirmed, or missed by the detector). The newest label is in force;
    sending the same label and note again changes nothing. 422 names a bad label."""
    from storage.exceptions import InvalidRecordError
    from storage.feedback import check_label

    row = _row(context, inspection_id)
    try:
        label = check_label(body.label)
    except InvalidRecordError as exc:
        raise ApiError(422, str(exc)) from None
    context.repository.set_feedback(row.frame_id, label, note=body.note, actor=body.actor or DEFAULT_ACTOR)
    return reviewed_json(context, row)


@router.post("/{inspection_id}/ack", response_model=Inspection, dependencies=[Depends(require_token)],
             summary="Acknowledge an inspection's alert")
def post_ack(
    inspection_id: InspectionId, context: Annotated[ApiContext, Depends(get_context)],
    body: Annotated[AckIn | None, Body()] = None,
) -> dict[str, Any]:
    """Record that an operator saw the alert; the first acknowledgement stands (repeating it is harmless)."""
    row = _row(context, inspection_id)
    context.repository.acknowledge(row.frame_id, actor=(body.actor if body else None) or DEFAULT_ACTOR)
    return reviewed_json(context, row)
