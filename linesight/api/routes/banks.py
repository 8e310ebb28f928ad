"""Memory banks: list, build from uploaded normal images, activate a version (the hot swap)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile

from linesight.api.auth import AUTH_RESPONSES, require_token
from linesight.api.context import ApiContext, get_context
from linesight.api.errors import ERROR_RESPONSES, ApiError
from linesight.api.routes.inspect import read_upload
from linesight.api.routes.params import ClassNameStr
from linesight.api.schemas import (
    BankChange,
    BankList,
    ColdStart,
    ColdStartRequest,
    bank_json,
    cold_start_json,
)

__all__ = ["router", "MAX_BANK_IMAGES"]

router = APIRouter(prefix="/api/banks", tags=["banks"], responses=ERROR_RESPONSES)

MAX_BANK_IMAGES = 64  # normal images per upload (few-shot: a handful is enough)

ClassName = Annotated[ClassNameStr, Path(description="product class")]


def _swap_message(context: ApiContext, key: str) -> tuple[str, float | None]:
    poll_s = context.settings.bank_poll_interval_s
    if context.expect_stream:
        return f"{key} is active; the running stream picks it up within {poll_s:g} s (bank_poll_interval_s)", poll_s
    return (
        f"{key} is active; a stream reading this database picks it up within {poll_s:g} s "
        "(bank_poll_interval_s); no stream runs in this server"
    ), poll_s


@router.get("", response_model=BankList, summary="All bank versions")
def list_banks(context: Annotated[ApiContext, Depends(get_context)]) -> dict[str, Any]:
    """Every registered version by class then version; ``active`` marks the one the stream uses;
    ``cold_starts``: the classes registered for cold start and how far they are."""
    repository = context.repository
    cold = [cold_start_json(row, repository.count_scored(row.product_class, "cold-start"))
            for row in repository.cold_starts()]
    return {"banks": [bank_json(row) for row in repository.list_banks()], "cold_starts": cold}


@router.post(
    "/{product_class}/cold-start",
    response_model=ColdStart,
    status_code=201,
    dependencies=[Depends(require_token)],
    responses={**AUTH_RESPONSES, 409: {"description": "The class already has an active bank"}},
    summary="Register a class with no bank for cold start in the running stream",
)
def register_cold_start(
    product_class: ClassName,
    context: Annotated[ApiContext, Depends(get_context)],
    request: ColdStartRequest | None = None,
) -> dict[str, Any]:
    """The stream scores the class against its own recent frames from its next frame (``score_source``
    'cold-start') and promotes the ``shots`` most normal of its first ``frames`` to a bank by itself."""
    settings, repository = context.settings, context.repository
    frames = (request.frames if request else None) or settings.coldstart_frames
    shots = (request.shots if request else None) or settings.coldstart_shots
    if frames < max(4, 2 * shots):
        raise ApiError(400, f"frames={frames} must be at least max(4, 2 * shots) = {max(4, 2 * shots)}")
    active = repository.active_banks().get(product_class)
    if active is not None:
        raise ApiError(409, f"class {product_class!r} already has an active bank (v{active.version}); "
                            "cold start is for a class with none")
    row = repository.register_cold_start(product_class, frames=frames, shots=shots, registered_by="api")
    return cold_start_json(row, repository.count_scored(product_class, "cold-start"))


@router.post(
    "/{product_class}",
    response_model=BankChange,
    status_code=201,
    dependencies=[Depends(require_token)],
    responses={**AUTH_RESPONSES, 413: {"description": "A file is larger than max_frame_bytes or max_frame_pixels"},
               415: {"description": "Not a PNG or JPEG"}},
    summary="Build a new calibrated bank version from normal images",
)
async def build_bank(
    product_class: ClassName,
    context: Annotated[ApiContext, Depends(get_context)],
    images: Annotated[list[UploadFile], File(description=f"1..{MAX_BANK_IMAGES} normal PNG/JPEG images")],
    activate: Annotated[bool, Form(description="make it the active version at once")] = True,
    rotations: Annotated[bool, Form(description="add 90/180/270-degree rotations (round parts, textures)")] = True,
) -> dict[str, Any]:
    """Build ``class@v(N+1)`` (threshold calibrated from the images, no manual threshold)."""
    if not 1 <= len(images) <= MAX_BANK_IMAGES:
        raise ApiError(400, f"send 1..{MAX_BANK_IMAGES} images in the 'images' field, got {len(images)}")
    settings = context.settings
    pixels = [await read_upload(upload, settings.max_frame_bytes, settings.max_frame_pixels) for upload in images]
    row = await context.inspector.build_bank(product_class, pixels, activate=activate, rotations=rotations)
    if activate:
        message, within = _swap_message(context, row.key)
    else:
        message, within = f"built {row.key} (not active: POST /api/banks/{product_class}/{row.version}/activate)", None
    return {"bank": bank_json(row), "message": message, "effective_within_s": within}


@router.post(
    "/{product_class}/{version}/activate",
    response_model=BankChange,
    dependencies=[Depends(require_token)],
    responses={**AUTH_RESPONSES, 409: {"description": "The bank file is missing or broken"}},
    summary="Activate a bank version (hot swap)",
)
async def activate_bank(
    product_class: ClassName,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    context: Annotated[ApiContext, Depends(get_context)],
) -> dict[str, Any]:
    """Make ``version`` the class's active bank; the running stream swaps within ``bank_poll_interval_s``."""
    row = await context.inspector.activate_bank(product_class, version)
    message, within = _swap_message(context, row.key)
    return {"bank": bank_json(row), "message": message, "effective_within_s": within}
