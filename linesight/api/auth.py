"""Bearer-token auth of the write endpoints: never open.

The token is ``settings.api_token``; when none is configured ``linesight serve`` generates a
random one with :func:`resolve_api_token`, logs it once, and the write endpoints require it.

>>> token, generated = resolve_api_token(None)
>>> generated, len(token) >= 32
(True, True)
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from linesight.api.errors import ApiError

__all__ = ["resolve_api_token", "require_token", "BEARER", "AUTH_RESPONSES"]

BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer <LINESIGHT_API_TOKEN>`")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="linesight"'}
_ERROR_BODY = {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token", "content": _ERROR_BODY},
}


def resolve_api_token(configured: Any | None) -> tuple[str, bool]:
    """``(token, generated)``: the configured token (a str or ``SecretStr``), or a new random one.

    >>> resolve_api_token("s3cret")
    ('s3cret', False)
    """
    if configured is not None:
        value = configured.get_secret_value() if hasattr(configured, "get_secret_value") else str(configured)
        if value.strip():
            return value.strip(), False
    return secrets.token_urlsafe(24), True


def require_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)  # noqa: B008
) -> None:
    """FastAPI dependency: 401 unless ``Authorization: Bearer <token>`` matches the app's token."""
    expected: str = request.app.state.api_token
    if credentials is None:
        raise ApiError(401, "this endpoint needs 'Authorization: Bearer <token>' (the API token)", _CHALLENGE)
    if credentials.scheme.lower() != "bearer" or not secrets.compare_digest(
        credentials.credentials.encode(), expected.encode()
    ):
        raise ApiError(401, "wrong API token in the Authorization header", _CHALLENGE)
