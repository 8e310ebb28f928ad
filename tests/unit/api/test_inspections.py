"""GET /api/inspections: filters, cursor pagination, one inspection, overlay and mask PNGs."""

from __future__ import annotations

from datetime import timedelta

import cv2
import numpy as np
import pytest

from tests.unit.api.helpers import T0, make_record, seed


def _ids(client, **params):
    response = client.get("/api/inspections", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_filters_select_exactly_the_matching_rows(client, repository):
    rows = seed(repository, 30)
    newest_first = lambda pred: [r.id for r in reversed(rows) if pred(r)]  # noqa: E731
    assert _ids(client, limit=500) == newest_first(lambda r: True)
    assert _ids(client, line="line-1", limit=500) == newest_first(lambda r: r.line_id == "line-1")
    assert _ids(client, camera="cam-2", limit=500) == newest_first(lambda r: r.camera_id == "cam-2")
    assert _ids(client, **{"class": "washer"}, limit=500) == newest_first(lambda r: r.product_class == "washer")
    assert _ids(client, anomalous="true", limit=500) == newest_first(lambda r: r.is_anomalous)
    assert _ids(client, anomalous="false", limit=500) == newest_first(lambda r: not r.is_anomalous)
    since, until = (T0 + timedelta(seconds=5)).isoformat(), (T0 + timedelta(seconds=9)).isoformat()
    window = newest_first(lambda r: T0 + timedelta(seconds=5) <= r.captured_at < T0 + timedelta(seconds=9))
    assert len(window) == 4
    assert _ids(client, since=since, until=until, limit=500) == window
    naive = (T0 + timedelta(seconds=5)).replace(tzinfo=None).isoformat()  # naive is taken as UTC
    assert _ids(client, since=naive, until=until, limit=500) == window
    combined = newest_first(lambda r: r.line_id == "line-0" and r.is_anomalous and r.product_class == "brick")
    assert _ids(client, line="line-0", anomalous="true", **{"class": "brick"}, limit=500) == combined


@pytest.mark.parametrize("anomalous", [None, "true", "false"])
def test_cursor_pagination_walks_every_row_once(client, repository, anomalous):
    rows = seed(repository, 23)
    expected = [r.id for r in reversed(rows) if anomalous is None or r.is_anomalous == (anomalous == "true")]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4, **({"anomalous": anomalous} if anomalous else {})}
        if cursor is not None:
            params["before_id"] = cursor
        body = client.get("/api/inspections", params=params).json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 20
    assert seen == expected
    assert pages == -(-len(expected) // 4)  # no empty last page


def test_one_inspection_has_every_field_and_links(client, repository):
    row = seed(repository, 4)[3]
    body = client.get(f"/api/inspections/{row.id}").json()
    assert body["frame_id"] == "f-3"
    assert body["is_anomalous"] is True
    assert body["positions"] == ["top right"]
    assert body["region_count"] == 1
    assert body["captured_at"].startswith("2026-03-02T06:00:03")
    assert body["links"]["overlay"] == f"/api/inspections/{row.id}/overlay.png"


def test_overlay_and_mask_are_pngs_of_the_stored_result(client, repository):
    row = seed(repository, 1)[0]
    overlay = client.get(f"/api/inspections/{row.id}/overlay.png")
    assert overlay.status_code == 200
    assert overlay.headers["content-type"] == "image/png"
    image = cv2.imdecode(np.frombuffer(overlay.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (32, 32, 3)
    mask = client.get(f"/api/inspections/{row.id}/mask.png")
    decoded = cv2.imdecode(np.frombuffer(mask.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded.shape == (32, 32)
    assert (decoded[4:12, 20:28] == 255).all()
    assert decoded.sum() == 255 * 64
    red_outline = (image[..., 2] > 200) & (image[..., 1] < 60) & (image[..., 0] < 60)  # BGR: red = mask contour
    assert red_outline.any()


def test_overlay_without_a_usable_frame_is_drawn_on_grey(client, repository):
    repository.upsert_inspections([make_record(0, frame_image=None), make_record(3, frame_image=b"\xff\xd8junk")])
    for row in repository.iter_history():
        response = client.get(f"/api/inspections/{row.id}/overlay.png")
        assert response.status_code == 200
        assert response.content[:4] == b"\x89PNG"


@pytest.mark.parametrize("path", ["/api/inspections/999", "/api/inspections/999/overlay.png",
                                  "/api/inspections/999/mask.png", "/api/inspections/999/chat"])
def test_unknown_inspection_is_a_json_404_naming_the_id(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "no inspection with id 999"}


def test_summary_counts_per_class(client, repository):
    seed(repository, 12)
    classes = {c["product_class"]: c for c in client.get("/api/summary").json()["classes"]}
    assert classes["brick"]["total"] == 6
    assert classes["washer"]["total"] == 6
    assert classes["brick"]["flagged"] + classes["washer"]["flagged"] == 4
