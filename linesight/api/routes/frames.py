"""The pictures of the detail view: the original frame, the heat above the threshold, the region boxes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel

from linesight.api.context import ApiContext, get_context
from linesight.api.errors import ERROR_RESPONSES, ApiError
from linesight.api.routes.inspections import InspectionId

__all__ = ["router", "Region", "Regions", "mask_regions"]

router = APIRouter(prefix="/api/inspections", tags=["inspections"], responses=ERROR_RESPONSES)

_HEADERS = {"Cache-Control": "private, max-age=3600"}  # a stored inspection never changes
_IMAGE = {200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "the image"}}


class Region(BaseModel):
    """A connected region of the mask; box as fractions of the frame (0..1, top-left origin)."""

    x: float
    y: float
    w: float
    h: float
    area_px: int  # in mask pixels
    area_share: float  # of the whole frame


class Regions(BaseModel):
    """The mask's regions, largest first, and the mask size they were measured on."""

    width_px: int
    height_px: int
    regions: list[Region]


def _masks(context: ApiContext, inspection_id: int) -> Any:
    if context.repository.get_inspection(inspection_id) is None:
        raise ApiError(404, f"no inspection with id {inspection_id}")
    masks = context.repository.get_masks(inspection_id)
    if masks is None:
        raise ApiError(404, f"inspection {inspection_id} has no stored anomaly map")
    return masks


@router.get("/{inspection_id}/frame", response_class=Response, responses=_IMAGE,
            summary="The frame as the camera sent it")
def frame(inspection_id: InspectionId, context: Annotated[ApiContext, Depends(get_context)]) -> Response:
    """The stored JPEG/PNG bytes, unchanged; 404 when the stream did not keep the frame."""
    data = _masks(context, inspection_id).frame_image
    if not data:
        raise ApiError(404, f"inspection {inspection_id} has no stored frame (only its map and mask)")
    media = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return Response(data, media_type=media, headers=_HEADERS)


@router.get("/{inspection_id}/heat.png", response_class=Response, responses=_IMAGE,
            summary="The heat above the class threshold (transparent elsewhere)")
def heat_png(inspection_id: InspectionId, context: Annotated[ApiContext, Depends(get_context)]) -> Response:
    """RGBA PNG at the map's size: yellow just above the threshold to red at twice it; alpha 0 below."""
    import cv2

    from model.overlay import heat_rgba

    row = context.repository.get_inspection(inspection_id)
    masks = _masks(context, inspection_id)
    threshold = float(row.threshold)
    rgba = heat_rgba(masks.anomaly_map(), threshold, max(2 * threshold, threshold + 1e-3))
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise ApiError(500, f"could not encode the heat of inspection {inspection_id}")
    return Response(png.tobytes(), media_type="image/png", headers=_HEADERS)


def mask_regions(mask: Any) -> dict[str, Any]:
    """Connected regions (8-connectivity) of a {0, 1} mask as boxes in frame fractions, largest first."""
    import cv2
    import numpy as np

    height, width = mask.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    regions = [
        {"x": int(x) / width, "y": int(y) / height, "w": int(w) / width, "h": int(h) / height,
         "area_px": int(area), "area_share": int(area) / (width * height)}
        for x, y, w, h, area in stats[1:count]
    ]
    regions.sort(key=lambda r: r["area_px"], reverse=True)
    return {"width_px": width, "height_px": height, "regions": regions}


@router.get("/{inspection_id}/regions", response_model=Regions, summary="Boxes of the mask's regions")
def regions(inspection_id: InspectionId, context: Annotated[ApiContext, Depends(get_context)]) -> dict[str, Any]:
    """Measured on the stored mask; boxes are fractions of the frame so they fit any displayed size."""
    return mask_regions(_masks(context, inspection_id).mask())
