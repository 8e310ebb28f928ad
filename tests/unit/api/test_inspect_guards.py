"""POST /api/inspect and bank uploads: bombs refused before decoding, concurrency limit, optional token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import open_repository
from tests.unit.api.helpers import TOKEN, png_bytes
from tests.unit.connectors.bombs import jpeg_with_forged_sof, png_bomb, png_with_forged_ihdr


@pytest.fixture
def no_decoding(monkeypatch):
    calls: list[int] = []

    def refuse(buffer, flags):  # noqa: ARG001
        calls.append(len(buffer))
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr(cv2, "imdecode", refuse)
    return calls


BOMBS = [
    ("bomb.png", png_bomb, "image/png", "20000x20000 px (400.0 MP)"),
    ("bomb.jpg", lambda: jpeg_with_forged_sof(20_000, 20_000), "image/jpeg", "20000x20000 px (400.0 MP)"),
    ("big.png", lambda: png_with_forged_ihdr(8192, 8192), "image/png", "8192x8192 px (67.1 MP)"),
]


@pytest.mark.parametrize(("name", "make", "kind", "declared"), BOMBS)
def test_inspect_refuses_bombs_with_413_naming_the_size(client, no_decoding, name, make, kind, declared):
    response = client.post("/api/inspect", files={"image": (name, make(), kind)}, data={"class": "brick"})
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert f"file {name!r} declares {declared}" in error
    assert "max_frame_pixels" in error
    assert no_decoding == []


@pytest.mark.parametrize(("name", "make", "kind", "declared"), BOMBS)
def test_bank_upload_refuses_bombs_before_building(client, auth, repository, no_decoding, name, make, kind, declared):
    response = client.post("/api/banks/brick", files=[("images", (name, make(), kind))], headers=auth)
    assert response.status_code == 413
    assert declared in response.json()["error"]
    assert no_decoding == []
    assert repository.list_banks() == []


def _settings(tmp_path, **over):
    from linesight.settings import load_settings

    return load_settings(database_url=f"sqlite:///{tmp_path / 'g.db'}", data_dir=tmp_path / "data",
                         max_frame_bytes=256 * 1024, **over)


@contextmanager
def _client(settings, inspector=None, active_bank: bool = False) -> Iterator[TestClient]:
    """A TestClient of an app on ``settings`` (optionally with a registered active 'brick' bank row)."""
    from linesight.api.app import create_app

    repositories = open_repository(settings.database_url)
    repository = next(repositories)
    try:
        if active_bank:
            repository.register_bank("brick", 1, str(settings.banks_dir / "brick" / "v1.safetensors"), "ab" * 32, 1,
                                     "efficientnet-lite0", {"threshold": 0.5}, activate=True)
        app = create_app(settings, token=TOKEN, repository=repository, inspector=inspector, stream_snapshot=lambda: None)
        with TestClient(app) as client:
            yield client
    finally:
        next(repositories, None)  # dispose the database


def test_the_pixel_limit_follows_the_setting(tmp_path, no_decoding):
    settings = _settings(tmp_path, max_frame_pixels=1000)
    with _client(settings) as c:
        response = c.post("/api/inspect", files={"image": ("a.png", png_with_forged_ihdr(40, 40), "image/png")},
                              data={"class": "brick"})
    assert response.status_code == 413
    assert "40x40 px" in response.json()["error"]
    assert "limit is 1000 px" in response.json()["error"]


def test_inspect_can_require_the_token(tmp_path):
    settings = _settings(tmp_path, api_inspect_requires_token=True)
    image = {"image": ("a.png", png_with_forged_ihdr(32, 32), "image/png")}
    with _client(settings) as c:
        anonymous = c.post("/api/inspect", files=image, data={"class": "brick"})
        wrong = c.post("/api/inspect", files=image, data={"class": "brick"}, headers={"Authorization": "Bearer nope"})
        with_token = c.post("/api/inspect", files=image, data={"class": "brick"},
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert anonymous.status_code == 401
    assert "Bearer" in anonymous.json()["error"]
    assert wrong.status_code == 401
    assert with_token.status_code == 404  # past the token and the upload checks: no bank for 'brick'
    assert "no active bank for class 'brick'" in with_token.json()["error"]


class GatedInspector:
    """An inspector whose first ``hold`` calls wait for ``release`` (to hold requests in flight)."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.calls = 0

    async def inspect(self, image, key):
        from anyio import to_thread

        with self._lock:
            self.calls += 1
            held = self.calls <= self.hold
        if held:
            self.entered.release()
            await to_thread.run_sync(self.release.wait, 30.0)
        product_class, _, version = key.rpartition("@v")
        return {"product_class": product_class, "bank_version": int(version), "is_anomalous": False,
                "score": 0.1, "threshold": 0.5, "positions": [], "region_count": 0,
                "verdict": f"{image.shape[1]}x{image.shape[0]}", "latency_ms": 1.0}


def test_tokenless_inspections_beyond_the_limit_get_429(tmp_path):
    settings = _settings(tmp_path, api_inspect_concurrency=2)
    gate = GatedInspector(hold=2)
    image = png_bytes(np.zeros((32, 32, 3), np.uint8))
    results: list = []

    def post(client, headers=None):
        return client.post("/api/inspect", files={"image": ("a.png", image, "image/png")}, data={"class": "brick"},
                           headers=headers or {})

    with _client(settings, inspector=gate, active_bank=True) as client:
        threads = [threading.Thread(target=lambda: results.append(post(client))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for _ in range(2):
            assert gate.entered.acquire(timeout=60)  # both are inside the inspector now
        refused = post(client)
        operator = post(client, {"Authorization": f"Bearer {TOKEN}"})  # the token is not throttled
        gate.release.set()
        for thread in threads:
            thread.join(60)
        after = post(client)  # the slots were given back
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "2 inspections without a token are already running (api_inspect_concurrency=2)" in refused.json()["error"]
    assert operator.status_code == 200
    assert [r.status_code for r in results] == [200, 200]
    assert results[0].json()["verdict"] == "32x32"
    assert after.status_code == 200
