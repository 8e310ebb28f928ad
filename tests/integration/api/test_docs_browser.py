"""/docs in headless Chromium with every request off this server refused: Swagger UI must still render.

Plant networks are often air-gapped; FastAPI's default page loaded Swagger UI from a CDN and was
blank there. The browser here aborts any request to another host and counts them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.api.served import served

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """uvicorn serving the app on a free port over an empty migrated SQLite file."""

    from linesight.api.app import create_app
    from linesight.settings import load_settings
    from tests.unit.api.helpers import TOKEN

    folder = tmp_path_factory.mktemp("docs")
    settings = load_settings(database_url=f"sqlite:///{folder / 'd.db'}", data_dir=folder)
    app = create_app(settings, token=TOKEN, stream_snapshot=lambda: None)
    with served(app) as url:
        yield url, app


def test_docs_render_with_no_internet(server, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, app = server
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `apt-get install -y chromium` (make env-browser)"
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def only_this_server(route) -> None:
            if route.request.url.startswith(url):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.goto(f"{url}/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        assert page.locator(".swagger-ui .opblock").count() == operations
        assert "linesight" in page.locator(".swagger-ui .title").inner_text()
        page.screenshot(path=str(tmp_path / "api-docs.png"), full_page=False)
        browser.close()
    assert refused == []
    assert errors == []
