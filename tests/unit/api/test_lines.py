"""Line screen endpoints on SQLite: tiles, trends, and dead letters without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.unit.api.helpers import make_record


def _store(repository, specs):
    """specs: (line_id, product_class, seconds ago, flagged), captured relative to now."""
    now = datetime.now(UTC)
    repository.upsert_inspections([
        make_record(i, line_id=line, product_class=cls, captured_at=now - timedelta(seconds=ago), is_anomalous=flagged)
        for i, (line, cls, ago, flagged) in enumerate(specs)
    ])


def test_tiles_say_which_line_is_up_and_its_flagged_share(client, repository):
    specs = [("press-1", "brick", 2 + i, i % 4 == 0) for i in range(20)]  # live
    specs += [("press-2", "washer", 900 + 10 * i, False) for i in range(5)]  # silent for 15 min
    _store(repository, specs)
    body = client.get("/api/lines").json()
    assert body["down_after_s"] == 30.0
    tiles = {tile["line_id"]: tile for tile in body["lines"]}
    assert tiles["press-1"]["is_up"] is True
    assert (tiles["press-1"]["frames_window"], tiles["press-1"]["flagged_window"]) == (20, 5)
    assert tiles["press-1"]["flagged_share"] == 0.25
    assert tiles["press-1"]["frames_per_s"] == 20 / 60
    assert tiles["press-2"]["is_up"] is False
    assert tiles["press-2"]["frames_per_s"] == 0.0
    assert tiles["press-2"]["last_frame_age_s"] >= 900


def test_trends_bucket_the_hour_and_the_shift(client, repository):
    specs = [("press-1", ("brick", "washer")[i % 2], 120 + 30 * i, i % 3 == 0) for i in range(40)]
    specs += [("press-2", "brick", 3 * 3600, True)]  # only in the shift
    _store(repository, specs)
    hour = client.get("/api/trends", params={"range": "hour"}).json()
    assert hour["bucket_s"] == 60
    assert sum(p["frames"] for p in hour["points"]) == 40
    assert sum(p["flagged"] for p in hour["points"]) == sum(1 for s in specs[:40] if s[3])
    assert {p["line_id"] for p in hour["points"]} == {"press-1"}
    shift = client.get("/api/trends", params={"range": "shift"}).json()
    assert shift["bucket_s"] == 300  # 8 h in 96 buckets
    assert sum(p["frames"] for p in shift["points"]) == 41
    only = client.get("/api/trends", params={"range": "shift", "line": "press-2"}).json()["points"]
    assert [(p["line_id"], p["frames"], p["flagged"]) for p in only] == [("press-2", 1, 1)]
    bad = client.get("/api/trends", params={"range": "week"})
    assert bad.status_code == 422
    assert "'week'" in bad.json()["error"]


def test_dead_letters_need_a_broker(client, auth):
    body = client.get("/api/dead-letters").json()
    assert (body["available"], body["items"]) == (False, [])
    assert "no Kafka broker is configured" in body["detail"]
    assert client.post("/api/dead-letters/0/1/replay").status_code == 401
    refused = client.post("/api/dead-letters/0/1/replay", headers=auth)
    assert refused.status_code == 409
    assert "no Kafka broker is configured" in refused.json()["error"]
