"""The feedback, acknowledgement and line-screen checks of tests/unit/storage, run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from storage.db import Database
from storage.repository import Repository
from tests.unit.storage import test_feedback, test_line_stats

pytestmark = pytest.mark.integration

# Collect the shared checks here: they then use this module's parametrized ``repo``.
for _module in (test_feedback, test_line_stats):
    globals().update({name: getattr(_module, name) for name in dir(_module) if name.startswith("test_")})
stored = test_feedback.stored


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
        connection.execute(sa.text(
            "TRUNCATE feedback, acknowledgements, chat_turns, masks, inspections, banks RESTART IDENTITY CASCADE"
        ))
    yield Repository(database)


@pytest.fixture
def database(repo: Repository) -> Database:
    return repo.database
