"""``POST /api/inspect``: score one uploaded image without Kafka (nothing is stored).

Open by default, so it is guarded: the image size is read from its header before decoding
(``max_frame_bytes``, ``max_frame_pixels``), at most ``api_inspect_concurrency`` requests without
a valid token are decoded and scored at once (more get 429 with ``Retry-After``), and
``api_inspect_requires_token`` makes it need the bearer token like the write endpoints.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials

from linesight.api.auth import AUTH_RESPONSES, BEARER, require_token
from linesight.api.context import ApiContext, get_context
from linesight.api.errors import ERROR_RESPONSES, ApiError
from linesight.api.inspector import bank_key
from linesight.api.routes.params import ClassNameStr
from linesight.api.schemas import Verdict
from linesight.api.uploads import decode_upload

__all__ = ["router", "read_upload", "inspect_guard"]

router = APIRouter(prefix="/api", tags=["inspect"], responses=ERROR_RESPONSES)

_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "The file is larger than max_frame_bytes"},
    415: {"description": "Not a PNG or JPEG"},
    429: {"description": "api_inspect_concurrency requests without a token are already running"},
    **AUTH_RESPONSES,
}


async def read_upload(upload: UploadFile, max_bytes: int, max_pixels: int) -> Any:
    """Read at most ``max_bytes + 1`` bytes of an upload and decode it after the checks of :mod:`uploads`."""
    data = await upload.read(max_bytes + 1)
    return decode_upload(data, upload.content_type, upload.filename, max_bytes=max_bytes, max_pixels=max_pixels)


class _Slots:
    """A non-blocking counter of running requests (event-loop only: no await between check and take)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0

    def take(self) -> bool:
        if self.running >= self.limit:
            return False
        self.running += 1
        return True

    def give_back(self) -> None:
        self.running -= 1


def _has_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> bool:
    expected: str = request.app.state.api_token
    return (
        credentials is not None
        and credentials.scheme.lower() == "bearer"
        and secrets.compare_digest(credentials.credentials.encode(), expected.encode())
    )


async def inspect_guard(
    request: Request,
    context: Annotated[ApiContext, Depends(get_context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> AsyncIterator[None]:
    """FastAPI dependency: the token when required (401), else a slot for tokenless callers (429)."""
    settings = context.settings
    if settings.api_inspect_requires_token:
        require_token(request, credentials)
        yield
        return
    if _has_token(request, credentials):
        yield  # operators with the token are not throttled
        return
    slots = getattr(request.app.state, "inspect_slots", None)
    if slots is None:
        slots = request.app.state.inspect_slots = _Slots(settings.api_inspect_concurrency)
    if not slots.take():
        raise ApiError(
            429,
            f"{slots.limit} inspections without a token are already running (api_inspect_concurrency="
            f"{slots.limit}); retry shortly, or send the API token",
            {"Retry-After": "1"},
        )
    try:
        yield
    finally:
        slots.give_back()


@router.post("/inspect", response_model=Verdict, responses=_UPLOAD_ERRORS, summary="Inspect one image",
             dependencies=[Depends(inspect_guard)])
async def inspect_image(
    context: Annotated[ApiContext, Depends(get_context)],
    image: Annotated[UploadFile, File(description="PNG or JPEG, 16..8192 px a side, <= max_frame_bytes and max_frame_pixels")],
    product_class: Annotated[ClassNameStr, Form(alias="class", description="product class")],
    version: Annotated[int | None, Form(ge=1, le=2**31 - 1, description="bank version (default: active)")] = None,
) -> dict[str, Any]:
    """Score the image with the class's active bank (or ``version``); returns the verdict."""
    from anyio import to_thread

    pixels = await read_upload(image, context.settings.max_frame_bytes, context.settings.max_frame_pixels)
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
