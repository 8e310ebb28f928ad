"""An API app on a migrated SQLite file per test (TestClient; no services)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.helpers import open_repository
from tests.unit.api.helpers import TOKEN


@pytest.fixture(scope="session")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'api.db'}"


@pytest.fixture
def settings(database_url, tmp_path):
    from linesight.settings import load_settings

    return load_settings(database_url=database_url, data_dir=tmp_path / "data", max_frame_bytes=256 * 1024,
                         bank_poll_interval_s=0.5, torch_threads=1)


@pytest.fixture
def repository(settings):
    yield from open_repository(settings.database_url)


@pytest.fixture
def app(settings, repository):
    from linesight.api.app import create_app

    return create_app(settings, token=TOKEN, repository=repository, stream_snapshot=lambda: None)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
