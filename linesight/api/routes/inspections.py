"""Stored inspections: filtered history with cursor pagination, one inspection, its overlay and mask."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from linesight.api.context import ApiContext, get_context
from linesight.api.errors import ERROR_RESPONSES, ApiError
from linesight.api.routes.params import MAX_ID, TEXT_PATTERN, ClassNameStr, as_utc
from linesight.api.schemas import Inspection, InspectionPage, Summary, inspection_json

__all__ = ["router", "render_inspection_overlay", "InspectionId"]

router = APIRouter(prefix="/api", tags=["inspections"], responses=ERROR_RESPONSES)

_PNG_HEADERS = {"Cache-Control": "private, max-age=3600"}  # a stored inspection never changes

InspectionId = Annotated[int, Path(ge=1, le=MAX_ID, description="inspection id")]


@router.get("/inspections", response_model=InspectionPage, summary="Inspections, newest first")
def list_inspections(
    context: Annotated[ApiContext, Depends(get_context)],
    line: Annotated[str | None, Query(pattern=TEXT_PATTERN, description="line id")] = None,
    camera: Annotated[str | None, Query(pattern=TEXT_PATTERN, description="camera id")] = None,
    product_class: Annotated[ClassNameStr | None, Query(alias="class")] = None,
    anomalous: Annotated[bool | None, Query(description="true: flagged only; false: normal only")] = None,
    since: Annotated[datetime | None, Query(description="captured at or after (ISO 8601; naive = UTC)")] = None,
    until: Annotated[datetime | None, Query(description="captured before (ISO 8601; naive = UTC)")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="cursor: next_cursor of the last page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Filter by line, camera, class, flag and capture time; page with ``before_id=next_cursor``."""
    filters = {
        "line_id": line,
        "camera_id": camera,
        "product_class": product_class,
        "anomalous": anomalous,
        "since": as_utc(since, "since"),
        "until": as_utc(until, "until"),
    }
    rows = context.repository.history(limit=limit + 1, before_id=before_id, **filters)
    more = len(rows) > limit
    rows = rows[:limit]
    frame_ids = [r.frame_id for r in rows]
    labels = context.repository.feedback_by_frame(frame_ids)
    acks = context.repository.acknowledgements_by_frame(frame_ids)
    items = [inspection_json(r, labels.get(r.frame_id), acks.get(r.frame_id)) for r in rows]
    return {"items": items, "next_cursor": rows[-1].id if more else None}


@router.get("/summary", response_model=Summary, summary="Per-class counts")
def summary(
    context: Annotated[ApiContext, Depends(get_context)],
    line: Annotated[str | None, Query(pattern=TEXT_PATTERN)] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
) -> dict[str, Any]:
    """Totals, flagged counts, mean score and mean latency per product class."""
    stats = context.repository.stats_by_class(
        line_id=line, since=as_utc(since, "since"), until=as_utc(until, "until")
    )
    return {"classes": [dataclasses.asdict(s) for s in stats.values()]}


def _inspection(context: ApiContext, inspection_id: int) -> Any:
    row = context.repository.get_inspection(inspection_id)
    if row is None:
        raise ApiError(404, f"no inspection with id {inspection_id}")
    return row


def _masks(context: ApiContext, inspection_id: int) -> Any:
    masks = context.repository.get_masks(inspection_id)
    if masks is None:
        _inspection(context, inspection_id)  # 404 for an unknown id
        raise ApiError(404, f"inspection {inspection_id} has no stored anomaly map")
    return masks


@router.get("/inspections/{inspection_id}", response_model=Inspection, summary="One inspection")
def get_inspection(
    inspection_id: InspectionId, context: Annotated[ApiContext, Depends(get_context)]
) -> dict[str, Any]:
    """The stored inspection with its operator label and acknowledgement, and links to its pictures and chat."""
    row = _inspection(context, inspection_id)
    repository = context.repository
    return inspection_json(row, repository.get_feedback(row.frame_id), repository.get_acknowledgement(row.frame_id))


_PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}


@router.get("/inspections/{inspection_id}/overlay.png", response_class=Response, responses=_PNG,
            summary="The frame with the anomaly heat map and the mask outlined")
def overlay_png(inspection_id: InspectionId, context: Annotated[ApiContext, Depends(get_context)]) -> Response:
    """Rendered from the stored frame, anomaly map and mask (grey background when no frame was kept)."""
    row = _inspection(context, inspection_id)
    png = render_inspection_overlay(_masks(context, inspection_id), row)
    return Response(png, media_type="image/png", headers=_PNG_HEADERS)


@router.get("/inspections/{inspection_id}/mask.png", response_class=Response, responses=_PNG,
            summary="The binary mask (0/255)")
def mask_png(inspection_id: InspectionId, context: Annotated[ApiContext, Depends(get_context)]) -> Response:
    """The stored mask PNG at the model's input size."""
    return Response(_masks(context, inspection_id).mask_png, media_type="image/png", headers=_PNG_HEADERS)


def render_inspection_overlay(masks: Any, row: Any) -> bytes:
    """PNG of the stored frame (resized to the map) with the heat map and the mask outline."""
    import cv2
    import numpy as np

    from model.overlay import encode_png, render_overlay

    heat = masks.anomaly_map()
    height, width = heat.shape
    image = None
    if masks.frame_image:
        decoded = cv2.imdecode(np.frombuffer(masks.frame_image, np.uint8), cv2.IMREAD_COLOR)
        if decoded is not None:
            image = cv2.resize(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), (width, height),
                               interpolation=cv2.INTER_AREA)
    if image is None:
        image = np.full((height, width, 3), 96, np.uint8)
    label = f"{row.product_class} {row.score:.3f}{' > ' if row.is_anomalous else ' <= '}{row.threshold:.3f}"
    # heat only above the class threshold (yellow) up to twice it (red); the frame is untouched below
    return encode_png(render_overlay(image, heat, masks.mask(), label=label, threshold=row.threshold,
                                     full_scale=max(2 * row.threshold, row.threshold + 1e-3)))
