"""Auth on write endpoints, JSON errors everywhere, and the catch-all that only answers 500 for bugs."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from linesight.api.auth import resolve_api_token
from tests.unit.api.helpers import TOKEN, png_bytes, seed

WRITES = [
    ("post", "/api/banks/brick/1/activate", {}),
    ("post", "/api/inspections/1/chat", {"json": {"question": "where?"}}),
    ("post", "/api/banks/brick", {"files": {"images": ("a.png", b"x", "image/png")}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), WRITES)
def test_write_endpoints_refuse_a_missing_or_wrong_token(client, repository, method, path, kwargs):
    seed(repository, 1)
    missing = getattr(client, method)(path, **kwargs)
    assert missing.status_code == 401
    assert "Bearer" in missing.json()["error"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = getattr(client, method)(path, headers={"Authorization": "Bearer nope"}, **kwargs)
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "wrong API token in the Authorization header"}


def test_an_unconfigured_token_is_generated_never_open(settings, repository):
    from linesight.api.app import create_app

    token, generated = resolve_api_token(settings.api_token)
    assert generated
    assert len(token) >= 32
    assert resolve_api_token(None)[0] != token
    app = create_app(settings, repository=repository, stream_snapshot=lambda: None)  # no token given
    with TestClient(app) as client:
        assert client.post("/api/banks/brick/1/activate").status_code == 401
        good = {"Authorization": f"Bearer {app.state.api_token}"}
        assert client.post("/api/banks/brick/1/activate", headers=good).status_code == 404  # past auth


def test_configured_token_is_used(settings, repository):
    from linesight.api.app import create_app

    app = create_app(settings.model_copy(update={"api_token": "from-settings"}), repository=repository)
    assert app.state.api_token == "from-settings"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [
        ("get", "/api/inspections?limit=0", {}, 422, "query parameter 'limit'"),
        ("get", "/api/inspections?since=yesterday", {}, 422, "'yesterday'"),
        ("get", "/api/inspections?class=no%20spaces", {}, 422, "query parameter 'class'"),
        ("get", "/api/inspections?line=%00", {}, 422, "query parameter 'line'"),
        ("get", "/api/inspections/abc", {}, 422, "path parameter 'inspection_id'"),
        ("get", f"/api/inspections/{2**70}", {}, 422, "path parameter 'inspection_id'"),
        ("get", "/api/nothing-here", {}, 404, "no such endpoint: GET /api/nothing-here"),
        ("delete", "/api/inspections", {}, 405, "method DELETE not allowed"),
        ("post", "/api/inspections/1/chat", {"json": {"question": ""}}, 422, "question"),
        ("post", "/api/inspections/1/chat", {"content": b"{not json", "headers": {"content-type": "application/json"}},
         422, "invalid request"),
        ("post", "/api/banks/bad%20name/1/activate", {}, 422, "path parameter 'product_class'"),
        ("post", "/api/banks/brick/7/activate", {}, 404, "no bank for class 'brick' version 7"),
    ],
)
def test_every_error_is_json_naming_the_bad_value(client, repository, auth, method, path, kwargs, status, needle):
    seed(repository, 1)
    headers = {**auth, **kwargs.pop("headers", {})}
    response = getattr(client, method)(path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert needle in body["error"]


def test_request_body_over_the_limit_is_413(client, auth, settings):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (settings.max_frame_bytes + 100_000)
    response = client.post("/api/inspect", files={"image": ("big.png", big, "image/png")}, data={"class": "brick"})
    assert response.status_code == 413
    assert "over the limit" in response.json()["error"]


def test_a_real_bug_is_logged_and_answered_500_as_json(app, caplog):
    @app.get("/api/boom")
    def boom() -> None:
        raise ZeroDivisionError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/boom")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (ZeroDivisionError); see the server log"}
    assert any("ZeroDivisionError" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_upload_problems_reach_the_client_as_json(client, repository):
    tiny = png_bytes(np.zeros((8, 8, 3), np.uint8))
    response = client.post("/api/inspect", files={"image": ("tiny.png", tiny, "image/png")}, data={"class": "brick"})
    assert response.status_code == 400
    assert "8x8 px" in response.json()["error"]
    text = client.post("/api/inspect", files={"image": ("a.txt", b"hello", "text/plain")}, data={"class": "brick"})
    assert text.status_code == 415
    assert "'text/plain'" in text.json()["error"]


def test_docs_and_spec_are_served(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "linesight"
    assert "/api/inspections" in spec["paths"]
    assert "/api/banks/{product_class}/{version}/activate" in spec["paths"]
    assert client.get("/docs").status_code == 200
    assert TOKEN not in client.get("/openapi.json").text
