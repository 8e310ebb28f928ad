"""The repository on both engines: ``repo`` is a fresh SQLite file, then the shared PostgreSQL emptied."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from storage.db import Database
from storage.repository import Repository

_TABLES = "feedback, acknowledgements, chat_turns, masks, inspections, banks, dead_letters, cold_starts"  # every table rows land in


@pytest.fixture(scope="module")
def postgres_database(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path) -> Iterator[Repository]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'linesight.db'}")
        database.migrate()
        yield Repository(database)
        database.dispose()
        return
    database = request.getfixturevalue("postgres_database")
    with database.transaction(write=True) as connection:
        connection.execute(sa.text(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE"))
    yield Repository(database)
