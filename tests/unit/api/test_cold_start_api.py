"""POST /api/banks/{class}/cold-start registers a class with no bank for in-stream cold start; GET /api/banks
shows the registry and, per bank, the frames its references came from."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_register_list_and_refuse(client: TestClient, auth, repository):
    assert client.post("/api/banks/gasket/cold-start", json={"frames": 16, "shots": 2}).status_code == 401
    created = client.post("/api/banks/gasket/cold-start", json={"frames": 16, "shots": 2}, headers=auth)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["state"], body["frames"], body["shots"], body["frames_scored"], body["registered_by"]) == (
        "scoring", 16, 2, 0, "api")
    defaults = client.post("/api/banks/washer/cold-start", headers=auth).json()
    assert (defaults["frames"], defaults["shots"]) == (64, 4)  # LINESIGHT_COLDSTART_FRAMES / _SHOTS
    bad = client.post("/api/banks/bolt/cold-start", json={"frames": 6, "shots": 4}, headers=auth)
    assert bad.status_code == 400
    assert "frames=6 must be at least max(4, 2 * shots) = 8" in bad.json()["error"]

    repository.register_bank("bolt", 1, "/b/bolt/v1.safetensors", "ab" * 32, 2, "efficientnet-lite0",
                             {"threshold": 0.3}, activate=True, reference_frames=["f-3", "f-9"])
    taken = client.post("/api/banks/bolt/cold-start", headers=auth)
    assert taken.status_code == 409
    assert "'bolt' already has an active bank (v1)" in taken.json()["error"]
    listed = client.get("/api/banks").json()
    assert [(c["product_class"], c["state"]) for c in listed["cold_starts"]] == [("gasket", "scoring"),
                                                                                ("washer", "scoring")]
    assert listed["banks"][0]["reference_frames"] == ["f-3", "f-9"]
