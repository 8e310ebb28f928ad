"""The dashboard in headless Chromium (Playwright with Debian's /usr/bin/chromium; no browser download).

The app runs under uvicorn on a free port over a SQLite file holding frames really scored by the
detector (lines line-1 and line-2, live) plus a line that stopped 10 minutes ago (line-3), and
reads dead letters from the session's Tansu broker. Each page is visited, asserted on and
screenshotted into the module's tmp folder; with ``LINESIGHT_SAVE_SCREENSHOTS=1`` the screenshots
are also copied to docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.api.served import served
from tests.unit.api.helpers import TOKEN, make_record, scored_records

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
SAVE_TO_DOCS = os.environ.get("LINESIGHT_SAVE_SCREENSHOTS") == "1"
VIEWPORT = {"width": 1440, "height": 900}


@dataclass
class _Record:  # what DeadLetterSink needs of a consumed record
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """``shots(page, name)``: a screenshot in the module's tmp folder (and docs/screenshots/ when asked)."""
    folder = tmp_path_factory.mktemp("screenshots")

    def take(page, name: str, full_page: bool = False) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size > 10_000, f"screenshot {name} looks empty"
        if SAVE_TO_DOCS:
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
        return path

    return take


@pytest.fixture(scope="module")
def topics(broker):
    """A frames topic and a dead-letter topic holding three dead letters (one replayable)."""
    import numpy as np

    from connectors.dead_letter import DeadLetterSink
    from connectors.kafka import ensure_topics, make_producer
    from connectors.schema import FrameHeaders, encode_image, frame_message

    frames, dead = f"frames-{uuid.uuid4().hex[:8]}", f"dlq-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap_servers, {frames: 1, dead: 1})
    headers = FrameHeaders(frame_id="line-2-gear-17", line_id="line-2", camera_id="cam-2", product_class="gear",
                           captured_at=datetime.now(UTC) - timedelta(minutes=3))
    key, value, kafka_headers = frame_message(headers, encode_image(np.full((64, 64, 3), 128, np.uint8)))
    producer = make_producer(broker.bootstrap_servers, max_request_size=1 << 20)
    sink = DeadLetterSink(producer, dead)
    sink.send(_Record(frames, 0, 41, key, value, kafka_headers), "unknown_class",
              "product_class 'gear' has no active bank (known: brick, washer)")
    sink.send(_Record(frames, 0, 42, b"line-1", b"\x00garbage", []), "missing_header", "header 'frame_id' is missing")
    sink.send(_Record(frames, 0, 43, b"line-1", b"not a jpeg", [("frame_id", b"line-1-x")]), "not_an_image",
              "10 bytes that OpenCV cannot decode as an image")
    sink.flush()
    producer.close()
    return frames, dead


@pytest.fixture(scope="module")
def server(tmp_path_factory, broker, topics):
    """uvicorn serving the app on a free port: 24 scored live frames, 6 old frames of a stopped line."""

    from linesight.api.app import create_app
    from linesight.settings import load_settings
    from model.encoders import build_encoder
    from storage.db import Database
    from storage.repository import Repository

    folder = tmp_path_factory.mktemp("dashboard")
    frames, dead = topics
    settings = load_settings(database_url=f"sqlite:///{folder / 'd.db'}", data_dir=folder, frames_topic=frames,
                             dead_letter_topic=dead)
    database = Database(settings.database_url)
    database.migrate()
    repository = Repository(database)
    stopped = datetime.now(UTC) - timedelta(minutes=10)  # stored first: ids follow capture time
    repository.upsert_inspections([
        make_record(100 + i, line_id="line-3", captured_at=stopped - timedelta(seconds=20 * (6 - i))) for i in range(6)
    ])
    repository.upsert_inspections(scored_records(build_encoder("efficientnet-lite0"), 24, seed_value=4))
    app = create_app(settings, token=TOKEN, repository=repository, bootstrap_servers=broker.bootstrap_servers,
                     stream_snapshot=lambda: None)
    with served(app) as url:
        yield url, repository
    database.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `apt-get install -y chromium` (make env-browser)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A page that records script errors and every request that left the server (none may: air-gapped)."""
    url, _ = server
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: None if request.url.startswith((url, "data:")) else outside.append(request.url))
    yield page
    page.close()
    assert errors == [], f"script errors: {errors}"
    assert outside == [], f"requests outside the server (the plant network is air-gapped): {outside}"


def _images_loaded(page, selector: str, count: int = 12) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll({selector!r})].slice(0, {count}).every(i => i.complete && i.naturalWidth > 0)"
    )


def _with_token(page, url: str) -> None:
    page.goto(f"{url}/#/lines")
    page.evaluate(f"sessionStorage.setItem('linesight.token', {TOKEN!r})")


def test_line_screen_shows_tiles_and_trends(server, page, shots):
    url, repository = server
    page.goto(f"{url}/")  # the line screen is the landing page
    page.wait_for_selector("#line-tiles .tile")
    assert page.locator("#line-tiles .tile").count() == 3
    assert page.locator(".tile.up").count() == 2
    down = page.locator('.tile[data-line="line-3"]')
    assert "down" in down.get_attribute("class")
    assert "min ago" in down.inner_text()  # stopped about 10 minutes before the test
    up = page.locator('.tile[data-line="line-1"]').inner_text()
    assert "frames/s" in up
    assert "flagged (1 h):" in up
    waiting = sum(1 for r in repository.iter_history(line_id="line-1", anomalous=True)
                  if repository.get_acknowledgement(r.frame_id) is None)
    assert f"{waiting} to acknowledge" in up
    page.wait_for_selector("#chart-throughput polyline", state="attached")
    assert page.locator("#chart-throughput polyline").count() == 3  # one series per line
    assert page.locator("#chart-share polyline, #chart-share circle").count() >= 2  # brick, washer (+ line-3's)
    assert page.locator(".tabs a.active").inner_text() == "Lines"
    shots(page, "lines", full_page=True)

    page.select_option("#trend-range", "shift")
    page.wait_for_function("() => location.hash.includes('range=shift')")
    page.wait_for_function("() => document.querySelector('#chart-throughput figcaption').textContent.includes('300 s')")
    page.select_option("#trend-line", "line-2")
    page.wait_for_function("() => document.querySelector('#chart-throughput figcaption').textContent.includes('line-2')")
    assert page.locator("#chart-throughput polyline").count() == 1
    page.locator('.tile[data-line="line-2"]').click()
    page.wait_for_selector("#live-grid .card")
    assert page.locator("#line-filter").input_value() == "line-2"


def test_live_page_filters_by_line(server, page, shots):
    url, repository = server
    page.goto(f"{url}/#/live")
    page.wait_for_selector("#live-grid .card img")
    _images_loaded(page, "#live-grid .card img")
    assert page.locator("#live-grid .card").count() == 24
    assert "healthy" in page.locator("#health-pill").inner_text()
    shots(page, "live")
    line_2 = [row.id for row in repository.iter_history(line_id="line-2")]
    page.select_option("#line-filter", "line-2")
    page.wait_for_function("() => location.hash.includes('line=line-2')")
    page.wait_for_function(f"() => document.querySelectorAll('#live-grid .card').length === {min(24, len(line_2))}")
    shown = [int(i) for i in page.locator("#live-grid .card").evaluate_all("cards => cards.map(c => c.dataset.id)")]
    assert shown == line_2[:24]
    assert all("line-2" in text for text in page.locator("#live-grid .card .muted").all_inner_texts())
    page.check("#only-flagged")
    page.wait_for_function("() => location.hash.includes('flagged=1')")
    flagged_2 = [row.id for row in repository.iter_history(line_id="line-2", anomalous=True)]
    page.wait_for_function(f"() => document.querySelectorAll('#live-grid .card').length === {len(flagged_2)}")
    _images_loaded(page, "#live-grid .card img")
    shots(page, "live-line-2-flagged")


def test_detail_shows_the_frame_with_heat_toggle_and_region_boxes(server, page, shots):
    url, repository = server
    flagged = next(r for r in repository.iter_history(anomalous=True) if r.line_id != "line-3")
    page.goto(f"{url}/#/inspection/{flagged.id}")
    page.wait_for_function("() => document.querySelector('#frame-image')?.naturalWidth === 224")
    page.wait_for_function("() => document.querySelector('#heat-image')?.naturalWidth === 224")
    page.wait_for_selector("#region-boxes rect.region", state="attached")
    regions = page.request.get(f"{url}/api/inspections/{flagged.id}/regions").json()["regions"]
    assert page.locator("#region-boxes rect.region").count() == len(regions) >= 1
    assert page.locator("#verdict").inner_text() == flagged.verdict
    assert page.locator("#mask-image").evaluate("img => img.naturalWidth") == 224
    assert page.locator("#overlay-image").evaluate("img => img.naturalWidth") == 224
    # the heat is transparent below the threshold: some pixels fully clear, some not
    alpha = page.evaluate("""() => {
        const img = document.querySelector('#heat-image'); const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data; let clear = 0, shown = 0;
        for (let i = 3; i < d.length; i += 4) { if (d[i] === 0) clear++; else shown++; } return [clear, shown]; }""")
    assert alpha[0] > 0
    assert alpha[1] > 0
    # the frame shows through: the heat layer has no background of its own
    assert page.locator("#heat-image").evaluate("img => getComputedStyle(img).backgroundColor") == "rgba(0, 0, 0, 0)"
    shots(page, "detail-heat-on", full_page=True)
    page.uncheck("#toggle-heat")
    assert page.locator("#heat-image").evaluate("img => getComputedStyle(img).visibility") == "hidden"
    page.uncheck("#toggle-boxes")
    assert page.locator("#region-boxes").evaluate("el => getComputedStyle(el).visibility") == "hidden"
    shots(page, "detail-heat-off", full_page=True)
    page.check("#toggle-heat")
    assert page.locator("#heat-image").evaluate("img => getComputedStyle(img).visibility") == "visible"


def test_feedback_clicks_change_the_stored_label(server, page, shots):
    url, repository = server
    flagged = [r for r in repository.iter_history(anomalous=True) if r.line_id != "line-3"]
    target = flagged[-1]
    page.goto(f"{url}/#/inspection/{target.id}")
    page.wait_for_selector("#review .false-alarm")
    assert page.locator("#review-state").inner_text() == "not reviewed"
    assert "null" not in page.locator("#review").inner_text()
    page.fill("#review-note", "glare on the rim")
    page.click("#review .false-alarm")
    page.wait_for_selector("#token-dialog[open]")  # the first write asks for the token
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[value=ok]")
    page.wait_for_selector('#review-state[data-label="false_alarm"]')
    stored = repository.get_feedback(target.frame_id)
    assert (stored.label, stored.note, stored.actor) == ("false_alarm", "glare on the rim", "api")
    assert target.frame_id in repository.feedback_for_class(target.product_class, "false_alarm")
    page.click("#review .ack")
    # the button is disabled while the request is in flight; "Acknowledged" is the server's answer
    page.wait_for_selector("#review .ack[disabled]:has-text('Acknowledged')")
    assert repository.get_acknowledgement(target.frame_id) is not None
    shots(page, "detail-false-alarm", full_page=True)
    page.fill("#review-note", "")
    page.click("#review .defect")
    page.wait_for_selector('#review-state[data-label="defect"]')
    assert repository.get_feedback(target.frame_id).label == "defect"
    assert target.frame_id not in repository.feedback_for_class(target.product_class, "false_alarm")

    # the same buttons on a flagged card of the live page (the token is kept in the tab)
    other = flagged[0]
    page.goto(f"{url}/#/live?flagged=1")
    card = page.locator(f'#live-grid .card[data-id="{other.id}"]')
    card.locator(".false-alarm").click()
    page.wait_for_selector(f'#live-grid .card[data-id="{other.id}"] .badge[data-label="false_alarm"]')
    assert repository.get_feedback(other.frame_id).label == "false_alarm"
    assert page.url.endswith("#/live?flagged=1")  # the click did not open the card
    _images_loaded(page, "#live-grid .card img")
    shots(page, "live-reviewed")


def test_dead_letters_are_listed_and_one_is_replayed(server, page, shots, broker, topics):
    from tests.integration.connectors.conftest import consume_all

    url, _ = server
    frames, _ = topics
    _with_token(page, url)
    page.goto(f"{url}/#/dead-letters")
    page.wait_for_selector("#dead-letter-rows tr[data-reason]")
    reasons = page.locator("#dead-letter-rows tr[data-reason]").evaluate_all("rows => rows.map(r => r.dataset.reason)")
    assert reasons == ["not_an_image", "missing_header", "unknown_class"]
    row = page.locator('#dead-letter-rows tr[data-reason="unknown_class"]')
    assert "line-2" in row.inner_text()
    assert "no active bank" in row.inner_text()
    assert page.locator("#dead-letter-rows button.replay").count() == 3
    shots(page, "dead-letters")
    row.locator("button.replay").click()
    page.wait_for_selector("#toast .msg:has-text('re-published')")
    [record] = consume_all(broker.bootstrap_servers, frames, expected=1)
    assert dict(record.headers)["frame_id"] == b"line-2-gear-17"


def test_history_and_banks_pages(server, page, shots):
    url, repository = server
    flagged = [r for r in repository.iter_history() if r.is_anomalous]
    page.goto(f"{url}/#/history?anomalous=true")
    page.wait_for_selector("table.list tbody tr.click")
    assert page.locator("table.list tbody tr.click").count() == len(flagged)
    page.goto(f"{url}/#/banks")
    page.wait_for_selector("#bank-form")
    page.wait_for_selector("text=No bank yet")
    shots(page, "banks")
