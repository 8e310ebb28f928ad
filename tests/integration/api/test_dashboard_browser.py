"""The dashboard in headless Chromium (Playwright with Debian's /usr/bin/chromium; no browser download).

The app runs under uvicorn on a free port over a SQLite file holding frames really scored by the
detector. The browser lists the latest inspections, opens a flagged one and shows its overlay.
Screenshots go to the test's tmp folder; the live view is also copied to docs/dashboard.png.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.unit.api.helpers import TOKEN, scored_records

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "dashboard.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """uvicorn serving the app on a free port, with 24 scored frames stored."""
    import uvicorn

    from connectors.tansu import free_port
    from linesight.api.app import create_app
    from linesight.settings import load_settings
    from model.encoders import build_encoder
    from storage.db import Database
    from storage.repository import Repository

    folder = tmp_path_factory.mktemp("dashboard")
    settings = load_settings(database_url=f"sqlite:///{folder / 'd.db'}", data_dir=folder)
    database = Database(settings.database_url)
    database.migrate()
    repository = Repository(database)
    repository.upsert_inspections(scored_records(build_encoder("efficientnet-lite0"), 24, seed_value=4))
    app = create_app(settings, token=TOKEN, repository=repository, stream_snapshot=lambda: None)
    port = free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uvicorn_server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", repository
    uvicorn_server.should_exit = True
    thread.join(10)
    database.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `apt-get install -y chromium` (make env-browser)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def test_dashboard_lists_inspections_and_opens_the_overlay(server, browser, tmp_path):
    url, repository = server
    flagged = [r for r in repository.iter_history() if r.is_anomalous]
    assert flagged, "the synthetic line produced no flagged frame"
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/#/live")
    page.wait_for_selector("#live-grid .card img")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#live-grid .card img')].slice(0, 12).every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("#live-grid .card").count() == 24
    assert page.locator("#live-grid .card.flagged").count() >= 1
    assert "healthy" in page.locator("#health-pill").inner_text()
    live_png = tmp_path / "dashboard-live.png"
    page.screenshot(path=str(live_png))
    DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
    shutil.copyfile(live_png, DOCS_SCREENSHOT)

    page.locator("#live-grid .card.flagged").first.click()
    page.wait_for_selector("#overlay-image")
    page.wait_for_function("() => document.querySelector('#overlay-image').naturalWidth === 224")
    shown_id = int(page.url.rsplit("/", 1)[1])
    row = repository.get_inspection(shown_id)
    assert row.is_anomalous
    assert page.locator("#verdict").inner_text() == row.verdict
    assert page.locator("#mask-image").evaluate("img => img.naturalWidth") == 224
    page.screenshot(path=str(tmp_path / "dashboard-detail.png"), full_page=True)

    page.goto(f"{url}/#/history?anomalous=true")
    page.wait_for_selector("table.list tbody tr.click")
    assert page.locator("table.list tbody tr.click").count() == len(flagged)
    page.goto(f"{url}/#/banks")
    page.wait_for_selector("#bank-form")
    page.wait_for_selector("text=No bank yet")
    page.screenshot(path=str(tmp_path / "dashboard-banks.png"))
    assert errors == []
    page.close()
