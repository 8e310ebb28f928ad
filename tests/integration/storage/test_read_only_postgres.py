"""Read-only commands on PostgreSQL: an empty database is named and left empty; a migrated one is read."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_postgres_url():
    import sqlalchemy as sa

    from tests.integration.conftest import ADMIN_POSTGRES_URL

    name = f"linesight_ro_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{ADMIN_POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_history_neither_creates_nor_migrates_a_postgres_schema(empty_postgres_url, capsys, monkeypatch):
    from linesight.cli import main
    from storage.db import Database

    monkeypatch.setenv("LINESIGHT_DATABASE_URL", empty_postgres_url)
    assert main(["history"]) == 2
    err = capsys.readouterr().err
    assert "holds no linesight schema" in err
    assert "linesight migrate" in err
    database = Database(empty_postgres_url)
    assert database.current_revision() is None  # still empty
    database.dispose()
    assert main(["migrate"]) == 0
    capsys.readouterr()
    assert main(["history"]) == 0
    assert "no inspections match" in capsys.readouterr().out
