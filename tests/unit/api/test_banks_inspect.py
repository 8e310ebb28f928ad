"""Bank builds from uploads, activation (hot swap), and POST /api/inspect with the real encoder."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.api.helpers import TOKEN, png_bytes


@pytest.fixture
def app(settings, repository, encoder):
    """The app with a local inspector sharing the session's encoder (built once)."""
    from linesight.api.app import create_app
    from linesight.api.inspector import BankInspector, LocalInspector

    inspector = LocalInspector(BankInspector(settings, repository=repository, encoder=encoder))
    return create_app(settings, token=TOKEN, repository=repository, inspector=inspector, stream_snapshot=lambda: None)


def _normal_files(seed: int, count: int = 2):
    from training.synthetic import normal_images

    return [("images", (f"n{i}.png", png_bytes(img), "image/png"))
            for i, img in enumerate(normal_images("washer", count, seed=seed))]


def _frame(defective: bool):
    from training.synthetic import SyntheticLine

    line = SyntheticLine(product_classes=("washer",), defect_rate=0.5, seed=3)
    while True:
        frame = line.next_frame()
        if frame.is_defective == defective:
            return frame.image


def test_build_activate_and_inspect_through_the_api(client: TestClient, auth, repository):
    built = client.post("/api/banks/washer", files=_normal_files(1), headers=auth)
    assert built.status_code == 201, built.text
    body = built.json()
    assert body["bank"]["key"] == "washer@v1"
    assert body["bank"]["active"] is True
    assert body["bank"]["calibration"]["threshold"] > 0
    assert body["effective_within_s"] == 0.5
    assert "within 0.5 s" in body["message"]
    assert "path" not in body["bank"]

    second = client.post("/api/banks/washer", files=_normal_files(2), data={"activate": "false"}, headers=auth)
    assert second.status_code == 201
    assert second.json()["bank"]["version"] == 2
    assert second.json()["bank"]["active"] is False
    assert second.json()["effective_within_s"] is None
    assert repository.active_banks()["washer"].version == 1

    normal = client.post("/api/inspect", files={"image": ("n.png", png_bytes(_frame(False)), "image/png")},
                         data={"class": "washer"})
    assert normal.status_code == 200, normal.text
    assert normal.json()["bank_version"] == 1
    assert normal.json()["is_anomalous"] is False
    defect = client.post("/api/inspect", files={"image": ("d.png", png_bytes(_frame(True)), "image/png")},
                         data={"class": "washer"})
    verdict = defect.json()
    assert verdict["is_anomalous"] is True
    assert verdict["score"] > verdict["threshold"]
    assert verdict["region_count"] >= 1
    assert verdict["positions"]
    assert verdict["verdict"].startswith("Yes")

    swapped = client.post("/api/banks/washer/2/activate", headers=auth)
    assert swapped.status_code == 200
    assert swapped.json()["bank"]["active"] is True
    assert "washer@v2 is active" in swapped.json()["message"]
    assert repository.active_banks()["washer"].version == 2
    after = client.post("/api/inspect", files={"image": ("n.png", png_bytes(_frame(False)), "image/png")},
                        data={"class": "washer"})
    assert after.json()["bank_version"] == 2  # the new key class@v2 was loaded: the swap
    pinned = client.post("/api/inspect", files={"image": ("n.png", png_bytes(_frame(False)), "image/png")},
                         data={"class": "washer", "version": "1"})
    assert pinned.json()["bank_version"] == 1
    listed = client.get("/api/banks").json()["banks"]
    assert [(b["key"], b["active"]) for b in listed] == [("washer@v1", False), ("washer@v2", True)]


def test_inspect_without_a_bank_is_404_naming_the_class(client):
    image = png_bytes(_frame(False))
    response = client.post("/api/inspect", files={"image": ("a.png", image, "image/png")}, data={"class": "gearbox"})
    assert response.status_code == 404
    assert "'gearbox'" in response.json()["error"]
    pinned = client.post("/api/inspect", files={"image": ("a.png", image, "image/png")},
                         data={"class": "gearbox", "version": "3"})
    assert pinned.status_code == 404
    assert "version 3" in pinned.json()["error"]


def test_bank_upload_is_validated_before_building(client, auth, repository):
    bad = client.post("/api/banks/washer", files=[("images", ("a.txt", b"hello", "text/plain"))], headers=auth)
    assert bad.status_code == 415
    assert "'a.txt'" in bad.json()["error"]
    none = client.post("/api/banks/washer", headers=auth)
    assert none.status_code == 422
    assert "images" in none.json()["error"]
    assert repository.list_banks() == []


def test_activating_a_broken_bank_file_is_refused(client, auth, repository, settings):
    built = client.post("/api/banks/washer", files=_normal_files(1, count=1), headers=auth).json()["bank"]
    assert built["version"] == 1
    row = repository.get_bank("washer", 1)
    with open(row.path, "r+b") as handle:
        handle.truncate(64)
    response = client.post("/api/banks/washer/1/activate", headers=auth)
    assert response.status_code == 409
    assert "washer" in response.json()["error"]
