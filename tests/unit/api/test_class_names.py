"""Class names in paths, queries and forms follow model.names; POST /api/banks/.. cannot escape."""

from __future__ import annotations

from urllib.parse import quote

import numpy as np
import pytest

from tests.unit.api.helpers import png_bytes

BAD = ["..", ".", "a\\b", ".hidden"]


def _segment(name: str) -> str:
    """``name`` as one URL path segment; dots escaped so the client cannot fold '.'/'..' away
    (the server decodes them back: what curl --path-as-is would send)."""
    return quote(name, safe="").replace(".", "%2E")


def _image_files(count: int = 1):
    rng = np.random.default_rng(0)
    return [("images", (f"n{i}.png", png_bytes(rng.integers(0, 255, (32, 32, 3), np.uint8)), "image/png"))
            for i in range(count)]


def _files_under(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("name", BAD)
def test_bank_build_with_a_bad_class_is_422_and_writes_nothing(client, auth, settings, tmp_path, name):
    before = _files_under(tmp_path)
    response = client.post(f"/api/banks/{_segment(name)}", files=_image_files(), headers=auth)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert f"invalid product class {name!r}" in error
    assert _files_under(tmp_path) == before  # nothing written anywhere under the test folder
    assert not settings.banks_dir.exists() or _files_under(settings.banks_dir) == []


def test_dot_dot_folded_by_the_client_is_no_bank_route(client, auth, tmp_path):
    before = _files_under(tmp_path)
    response = client.post("/api/banks/..", files=_image_files(), headers=auth)  # becomes POST /api
    assert response.status_code in (404, 405)
    assert _files_under(tmp_path) == before


def test_slash_in_a_class_is_not_a_bank_route(client, auth):
    response = client.post(f"/api/banks/{_segment('a/b')}", files=_image_files(), headers=auth)
    assert response.status_code in (404, 405, 422)  # never 201
    assert "error" in response.json()


@pytest.mark.parametrize("name", BAD)
def test_activate_with_a_bad_class_is_422(client, auth, name):
    response = client.post(f"/api/banks/{_segment(name)}/1/activate", headers=auth)
    assert response.status_code == 422
    assert repr(name) in response.json()["error"]


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b"])
def test_inspect_and_history_filters_refuse_bad_classes(client, name):
    image = png_bytes(np.zeros((32, 32, 3), np.uint8))
    inspect = client.post("/api/inspect", files={"image": ("a.png", image, "image/png")}, data={"class": name})
    assert inspect.status_code == 422
    assert f"invalid product class {name!r}" in inspect.json()["error"]
    history = client.get("/api/inspections", params={"class": name})
    assert history.status_code == 422
    assert f"invalid product class {name!r}" in history.json()["error"]

