"""The repository checks of tests/unit/storage/test_repository.py, run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from storage.db import Database
from storage.repository import Repository
from tests.unit.storage import test_repository as shared

pytestmark = pytest.mark.integration

# Collect every shared check here too: they then use this module's parametrized ``repo``.
globals().update({name: getattr(shared, name) for name in dir(shared) if name.startswith("test_")})


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
        connection.execute(sa.text("TRUNCATE chat_turns, masks, inspections, banks RESTART IDENTITY CASCADE"))
    yield Repository(database)


def test_upsert_of_a_mixed_batch_of_32(repo: Repository):
    """The stream's batch size: half replayed, half new; only the new ids come back, once."""
    from tests.unit.storage.helpers import make_record

    assert len(repo.upsert_inspections([make_record(i) for i in range(0, 32, 2)])) == 16
    batch = [make_record(i) for i in range(32)]
    assert repo.upsert_inspections(batch) == [f"f-{i}" for i in range(1, 32, 2)]
    assert repo.upsert_inspections(batch) == []
    assert repo.count_inspections() == 32
    assert all(repo.get_masks(row.id) is not None for row in repo.history(limit=100))
