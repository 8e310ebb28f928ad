"""``/docs`` without the internet: Swagger UI served from the ``swagger-ui-bundle-v2`` package's files.

FastAPI's default ``/docs`` page loads Swagger UI from a CDN, which a plant's air-gapped network
cannot reach (a blank page). Here the page references only this server: the JavaScript, CSS and
favicon under ``/docs/assets/`` and the schema at ``/openapi.json``.

>>> from fastapi import FastAPI
>>> from fastapi.testclient import TestClient
>>> app = FastAPI(docs_url=None, redoc_url=None); install_offline_docs(app)
>>> "https://" in TestClient(app).get("/docs").text
False
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install_offline_docs", "swagger_ui_dir"]

ASSETS_PATH = "/docs/assets"


def swagger_ui_dir() -> Path:
    """The folder of Swagger UI's static files inside the installed ``swagger-ui-bundle-v2`` package."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


def install_offline_docs(app: FastAPI, docs_url: str = "/docs", openapi_url: str = "/openapi.json") -> None:
    """Serve Swagger UI at ``docs_url`` with every asset from this server (create the app with ``docs_url=None``)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")
    redirect_url = f"{docs_url}/oauth2-redirect"

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API docs",
            oauth2_redirect_url=redirect_url,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        )

    @app.get(redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
