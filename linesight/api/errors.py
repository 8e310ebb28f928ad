"""Every error the API answers is JSON ``{"error": "..."}``; bad input never answers 500.

:class:`ApiError` carries an HTTP status; linesight's own errors are mapped by type
(not found -> 404, invalid value -> 400, a service that is down -> 503). Anything else is a
real bug: it is logged with its traceback and answered 500 without internals.

>>> ApiError(404, "no inspection with id 7").status_code
404
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from linesight.errors import ERROR_CATEGORIES, LinesightError

__all__ = ["ApiError", "ERROR_RESPONSES", "install_error_handlers", "status_for"]

log = logging.getLogger(__name__)

# OpenAPI documentation of the error body shared by every route.
_ERROR_SCHEMA = {
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
        }
    }
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad input (the message names the bad value)", **_ERROR_SCHEMA},
    404: {"description": "Not found", **_ERROR_SCHEMA},
    422: {"description": "Invalid parameter (the message names it)", **_ERROR_SCHEMA},
}


class ApiError(LinesightError):
    """An error with an HTTP status; the message is the JSON ``error`` and names the bad value."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers

    def __reduce__(self) -> tuple[Any, ...]:  # crosses Ray process boundaries intact
        return (type(self), (self.status_code, str(self), self.headers))


def status_for(exc: LinesightError) -> int:
    """The HTTP status of a linesight error: an :class:`ApiError`'s own, else its category's.

    Categories (:data:`linesight.errors.ERROR_CATEGORIES`) are matched by ``isinstance`` in order,
    so renaming an exception class never changes its status; an error with no category is a bug (500).

    >>> from linesight.errors import ConfigError
    >>> status_for(ConfigError("--shots must be >= 1, got 0"))
    400
    """
    if isinstance(exc, ApiError):
        return exc.status_code
    for category in ERROR_CATEGORIES:
        if isinstance(exc, category):
            return category.http_status
    return 500


def _error(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else ".".join(loc) or "request"
        if loc and loc[0] == "body":
            where = f"form field {'.'.join(loc[1:])!r}" if len(loc) > 1 else "request body"
        shown = err.get("input")
        value = "" if shown is None or isinstance(shown, dict | list) else f", got {str(shown)[:80]!r}"
        parts.append(f"{where}: {err.get('msg', 'invalid')}{value}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON ``{"error": ...}``; log and answer 500 only for real bugs."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(LinesightError)
    async def _linesight(request: Request, exc: LinesightError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500 and status != 503:
            log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(status, str(exc), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed with an unexpected error", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

