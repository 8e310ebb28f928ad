"""The FastAPI app factory: JSON API under ``/api``, ``/healthz``, ``/metrics``, the dashboard at ``/``.

The same app runs under ``TestClient`` (tests), uvicorn, or Ray Serve's ingress deployment
(:mod:`linesight.api.deployment`). Services are built lazily by :class:`ApiContext`.

>>> from fastapi.testclient import TestClient
>>> from linesight.settings import load_settings
>>> app = create_app(load_settings(database_url="sqlite://"), token="t0ken")
>>> TestClient(app).get("/api/inspections").json()
{'items': [], 'next_cursor': None}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from linesight.api.auth import resolve_api_token
from linesight.api.context import ApiContext, ray_monitor_snapshot
from linesight.api.docs import install_offline_docs
from linesight.api.errors import install_error_handlers
from linesight.api.metrics import build_registry, request_counter
from linesight.api.routes import banks, chat, frames, health, inspect, inspections, lines, review
from linesight.settings import Settings

__all__ = ["create_app", "STATIC_DIR"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and form fields around the files

_DESCRIPTION = """
Stored inspections (filters, cursor pagination, overlay and mask PNGs), the operator's dialogue
about a flagged frame, one-off inspection of an uploaded image, memory-bank builds and hot swaps,
health and Prometheus metrics.

Write endpoints (bank builds, activation, chat questions) need `Authorization: Bearer <token>`
(`LINESIGHT_API_TOKEN`; `linesight serve` prints a generated one when none is set).
Every error is JSON `{"error": "..."}` naming the bad value.
"""


def create_app(
    settings: Settings,
    *,
    token: str | None = None,
    repository: Any | None = None,
    inspector: Any | None = None,
    dialogue: Any | None = None,
    bootstrap_servers: str | None = None,
    expect_stream: bool = False,
    stream_snapshot: Callable[[], dict[str, Any] | None] = ray_monitor_snapshot,
) -> FastAPI:
    """Build the app; ``token`` (else ``settings.api_token``, else a random one, logged) guards writes.

    ``repository``/``inspector``/``dialogue`` default to ones built from ``settings`` on first use;
    ``expect_stream`` makes ``/healthz`` fail when the stream monitor does not answer.
    """
    if token is None:
        token, generated = resolve_api_token(settings.api_token)
        if generated:
            log.warning("no LINESIGHT_API_TOKEN set: write endpoints need this generated token: %s", token)
    from importlib.metadata import PackageNotFoundError, version

    try:
        app_version = version("linesight")
    except PackageNotFoundError:
        app_version = "0"
    app = FastAPI(
        title="linesight",
        version=app_version,
        description=_DESCRIPTION,
        docs_url=None,  # served offline by install_offline_docs (the default page loads Swagger UI from a CDN)
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    context = ApiContext(
        settings,
        repository=repository,
        inspector=inspector,
        dialogue=dialogue,
        bootstrap_servers=bootstrap_servers,
        expect_stream=expect_stream,
        stream_snapshot=stream_snapshot,
    )
    app.state.context = context
    app.state.api_token = token
    app.state.metrics_registry = build_registry(stream_snapshot, lambda: context.repository)
    _install_middleware(app, settings, request_counter(app.state.metrics_registry))
    install_error_handlers(app)
    for module in (inspections, frames, review, lines, chat, inspect, banks, health):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_offline_docs(app)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def _install_middleware(app: FastAPI, settings: Settings, requests: Any) -> None:
    from linesight.api.routes.banks import MAX_BANK_IMAGES

    upload_limit = settings.max_frame_bytes + _FORM_OVERHEAD_BYTES
    bank_limit = settings.max_frame_bytes * MAX_BANK_IMAGES + _FORM_OVERHEAD_BYTES

    @app.middleware("http")
    async def limit_and_count(request: Request, call_next: Callable[[Request], Any]) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None:
            limit = bank_limit if request.url.path.startswith("/api/banks") else upload_limit
            if not declared.isdigit():
                response: Response = JSONResponse({"error": f"invalid Content-Length {declared!r}"}, 400)
            elif int(declared) > limit:
                response = JSONResponse(
                    {"error": f"request body of {declared} bytes is over the limit of {limit} bytes "
                              f"(max_frame_bytes={settings.max_frame_bytes} per image)"}, 413,
                )
            else:
                response = await call_next(request)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        requests.labels(request.method, getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response
