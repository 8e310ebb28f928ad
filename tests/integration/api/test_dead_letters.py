"""The line screen's dead-letter view and replay against a real Tansu broker (TestClient app)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from connectors.dead_letter import DeadLetterSink
from connectors.dead_letter_reader import REPLAY_HEADER
from connectors.kafka import ensure_topics, make_producer
from tests.integration.connectors.conftest import consume_all
from tests.unit.api.helpers import TOKEN

pytestmark = pytest.mark.integration


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list


def _frame_headers(frame_id: str, line_id: str, product_class: str = "gear") -> list:
    return [("frame_id", frame_id.encode()), ("line_id", line_id.encode()), ("camera_id", b"cam-1"),
            ("product_class", product_class.encode()), ("captured_at", b"2026-12-01T03:00:00+00:00")]


@pytest.fixture
def database_url(sqlite_url) -> str:
    return sqlite_url


@pytest.fixture
def topics(broker):
    frames, dead = f"frames-{uuid.uuid4().hex[:10]}", f"dlq-{uuid.uuid4().hex[:10]}"
    ensure_topics(broker.bootstrap_servers, {frames: 2, dead: 1})
    producer = make_producer(broker.bootstrap_servers, max_request_size=64 * 1024)
    sink = DeadLetterSink(producer, dead)
    sink.send(Record(frames, 0, 5, b"line-1", b"\xff\xd8jpeg", _frame_headers("f-unknown", "line-1")),
              "unknown_class", "product_class 'gear' has no active bank (known: brick)")
    sink.send(Record(frames, 1, 9, b"line-2", b"x" * 70_000, _frame_headers("f-big", "line-2")),
              "oversize", "frame is 70000 bytes, the limit is 65536")
    sink.send(Record(frames, 0, 6, b"line-1", b"garbage", []), "missing_header", "header 'frame_id' is missing")
    sink.flush()
    producer.close()
    return frames, dead


@pytest.fixture
def client(broker, topics, settings, repository):
    from linesight.api.app import create_app

    frames, dead = topics
    local = settings.model_copy(update={"frames_topic": frames, "dead_letter_topic": dead})
    app = create_app(local, token=TOKEN, repository=repository, bootstrap_servers=broker.bootstrap_servers,
                     stream_snapshot=lambda: None)
    with TestClient(app) as test_client:
        yield test_client


def test_dead_letters_show_reason_time_and_line(client):
    response = client.get("/api/dead-letters")
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["reason"] for item in items] == ["missing_header", "oversize", "unknown_class"]  # newest first
    unknown = items[2]
    assert (unknown["line_id"], unknown["frame_id"], unknown["product_class"]) == ("line-1", "f-unknown", "gear")
    assert "no active bank" in unknown["detail"]
    assert unknown["failed_at"].startswith("20")
    assert unknown["replayable"]
    assert (unknown["source_partition"], unknown["source_offset"]) == (0, 5)
    oversize = items[1]
    assert oversize["value_dropped_bytes"] == 70_000
    assert not oversize["replayable"]
    assert items[0]["line_id"] == "line-1"  # no headers: the key names the line
    only_line_2 = client.get("/api/dead-letters", params={"line": "line-2"}).json()["items"]
    assert [item["frame_id"] for item in only_line_2] == ["f-big"]
    assert [i["reason"] for i in client.get("/api/dead-letters", params={"reason": "oversize"}).json()["items"]] == [
        "oversize"]


def test_replay_republishes_the_original_frame(client, broker, topics, auth):
    frames, _ = topics
    unknown = next(i for i in client.get("/api/dead-letters").json()["items"] if i["reason"] == "unknown_class")
    url = f"/api/dead-letters/{unknown['partition']}/{unknown['offset']}/replay"
    assert client.post(url).status_code == 401
    response = client.post(url, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["topic"] == frames
    [record] = consume_all(broker.bootstrap_servers, frames, expected=1)
    headers = dict(record.headers)
    assert (record.key, record.value) == (b"line-1", b"\xff\xd8jpeg")
    assert headers["frame_id"] == b"f-unknown"
    assert not any(name.startswith("dlq.") for name in headers)
    assert headers[REPLAY_HEADER].decode().endswith(f"[{unknown['partition']}]@{unknown['offset']}")


def test_replay_refuses_what_it_cannot_replay(client, auth):
    items = client.get("/api/dead-letters").json()["items"]
    oversize = next(i for i in items if i["reason"] == "oversize")
    refused = client.post(f"/api/dead-letters/{oversize['partition']}/{oversize['offset']}/replay", headers=auth)
    assert refused.status_code == 409
    assert "70000-byte value was dropped" in refused.json()["error"]
    missing = client.post("/api/dead-letters/0/999/replay", headers=auth)
    assert missing.status_code == 404
    assert "@999" in missing.json()["error"]
    assert client.post("/api/dead-letters/7/0/replay", headers=auth).status_code == 404
