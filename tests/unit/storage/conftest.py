"""A migrated SQLite file per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.db import Database
from storage.repository import Repository


@pytest.fixture
def database(tmp_path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'data' / 'linesight.db'}")
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def repo(database: Database) -> Repository:
    return Repository(database)
