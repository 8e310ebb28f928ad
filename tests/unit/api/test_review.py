"""Feedback and acknowledgement endpoints, and the detail view's pictures (frame, heat, regions)."""

from __future__ import annotations

import cv2
import numpy as np

from tests.unit.api.helpers import seed


def test_feedback_is_stored_shown_and_the_newest_wins(client, repository, auth):
    flagged = seed(repository, 6)[3]  # every third flagged
    assert flagged.is_anomalous
    url = f"/api/inspections/{flagged.id}/feedback"
    response = client.post(url, json={"label": "false_alarm", "note": "glare", "actor": "ana"}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["feedback"]["label"] == "false_alarm"
    assert repository.get_feedback(flagged.frame_id).note == "glare"
    assert client.post(url, json={"label": "false_alarm", "note": "glare"}, headers=auth).status_code == 200
    assert len(repository.feedback_history(flagged.frame_id)) == 1  # idempotent
    client.post(url, json={"label": "defect"}, headers=auth)
    shown = client.get(f"/api/inspections/{flagged.id}").json()
    assert (shown["feedback"]["label"], shown["feedback"]["actor"]) == ("defect", "api")
    page = client.get("/api/inspections", params={"limit": 10}).json()["items"]
    assert {item["id"]: item["feedback"] and item["feedback"]["label"] for item in page}[flagged.id] == "defect"
    assert repository.feedback_for_class(flagged.product_class, "defect") == [flagged.frame_id]


def test_ack_is_stored_once_and_shown(client, repository, auth):
    flagged = seed(repository, 4)[0]
    first = client.post(f"/api/inspections/{flagged.id}/ack", json={"actor": "ana"}, headers=auth)
    assert first.status_code == 200, first.text
    again = client.post(f"/api/inspections/{flagged.id}/ack", headers=auth).json()  # no body: default actor
    assert again["acknowledgement"] == first.json()["acknowledgement"]
    assert again["acknowledgement"]["acknowledged_by"] == "ana"
    assert client.get(f"/api/inspections/{flagged.id}").json()["acknowledgement"]["acknowledged_by"] == "ana"


def test_review_needs_the_token_and_names_bad_input(client, repository, auth):
    rows = seed(repository, 3)
    flagged, normal = rows[0], rows[1]
    url = f"/api/inspections/{flagged.id}/feedback"
    assert client.post(url, json={"label": "defect"}).status_code == 401
    assert client.post(f"/api/inspections/{flagged.id}/ack").status_code == 401
    assert client.post(url, json={"label": "defect"}, headers={"Authorization": "Bearer nope"}).status_code == 401
    bad = client.post(url, json={"label": "maybe"}, headers=auth)
    assert bad.status_code == 422
    assert "got 'maybe'" in bad.json()["error"]
    missing = client.post("/api/inspections/9999/feedback", json={"label": "defect"}, headers=auth)
    assert missing.status_code == 404
    assert "9999" in missing.json()["error"]
    assert client.post("/api/inspections/9999/ack", headers=auth).status_code == 404
    not_flagged = client.post(f"/api/inspections/{normal.id}/feedback", json={"label": "false_alarm"}, headers=auth)
    assert not_flagged.status_code == 400
    assert "was not flagged" in not_flagged.json()["error"]
    assert repository.get_feedback(flagged.frame_id) is None


def test_frame_heat_and_regions(client, repository):
    flagged = seed(repository, 4)[0]  # heat 0.95 at rows 4:12, columns 20:28 of a 32 px map; threshold 0.6
    frame = client.get(f"/api/inspections/{flagged.id}/frame")
    assert frame.status_code == 200
    assert frame.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)
    heat = cv2.imdecode(np.frombuffer(client.get(f"/api/inspections/{flagged.id}/heat.png").content, np.uint8),
                        cv2.IMREAD_UNCHANGED)
    assert heat.shape == (32, 32, 4)
    alpha = heat[..., 3]
    assert (alpha[4:12, 20:28] > 0).all()
    assert alpha.sum() == alpha[4:12, 20:28].sum()  # transparent below the threshold (the map elsewhere < 0.4)
    body = client.get(f"/api/inspections/{flagged.id}/regions").json()
    assert (body["width_px"], body["height_px"]) == (32, 32)
    (region,) = body["regions"]
    assert (region["x"], region["y"], region["w"], region["h"]) == (20 / 32, 4 / 32, 8 / 32, 8 / 32)
    assert region["area_px"] == 64
    assert client.get("/api/inspections/9999/regions").status_code == 404


def test_overlay_leaves_the_frame_untouched_below_the_threshold(client, repository):
    normal = seed(repository, 2)[1]  # heat < 0.4 everywhere, threshold 0.6
    overlay = cv2.imdecode(np.frombuffer(client.get(f"/api/inspections/{normal.id}/overlay.png").content, np.uint8),
                           cv2.IMREAD_COLOR)
    frame = cv2.imdecode(np.frombuffer(client.get(f"/api/inspections/{normal.id}/frame").content, np.uint8),
                         cv2.IMREAD_COLOR)
    frame = cv2.resize(frame, overlay.shape[1::-1], interpolation=cv2.INTER_AREA)
    below_label = np.s_[20:, :]  # the top rows carry the score label
    assert np.abs(overlay[below_label].astype(int) - frame[below_label].astype(int)).max() <= 1
