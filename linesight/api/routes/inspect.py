"""``POST /api/inspect``: score one uploaded image without Kafka (nothing is stored)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile

from linesight.api.context import ApiContext, get_context
from linesight.api.errors import ERROR_RESPONSES, ApiError
from linesight.api.inspector import bank_key
from linesight.api.routes.params import ClassNameStr
from linesight.api.schemas import Verdict
from linesight.api.uploads import decode_upload

__all__ = ["router", "read_upload"]

router = APIRouter(prefix="/api", tags=["inspect"], responses=ERROR_RESPONSES)

_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "The file is larger than max_frame_bytes"},
    415: {"description": "Not a PNG or JPEG"},
}


async def read_upload(upload: UploadFile, max_bytes: int) -> Any:
    """Read at most ``max_bytes + 1`` bytes of an upload and decode it after the checks of :mod:`uploads`."""
    data = await upload.read(max_bytes + 1)
    return decode_upload(data, upload.content_type, upload.filename, max_bytes=max_bytes)


@router.post("/inspect", response_model=Verdict, responses=_UPLOAD_ERRORS, summary="Inspect one image")
async def inspect_image(
    context: Annotated[ApiContext, Depends(get_context)],
    image: Annotated[UploadFile, File(description="PNG or JPEG, 16..8192 px a side, <= max_frame_bytes")],
    product_class: Annotated[ClassNameStr, Form(alias="class", description="product class")],
    version: Annotated[int | None, Form(ge=1, le=2**31 - 1, description="bank version (default: active)")] = None,
) -> dict[str, Any]:
    """Score the image with the class's active bank (or ``version``); returns the verdict."""
    from anyio import to_thread

    pixels = await read_upload(image, context.settings.max_frame_bytes)
    repository = context.repository
    if version is None:
        active = await to_thread.run_sync(repository.active_banks)
        if product_class not in active:
            known = ", ".join(sorted(active)) or "none"
            raise ApiError(404, f"no active bank for class {product_class!r} (active: {known})")
        version = active[product_class].version
    else:
        await to_thread.run_sync(repository.get_bank, product_class, version)  # 404 naming known versions
    return await context.inspector.inspect(pixels, bank_key(product_class, version))
