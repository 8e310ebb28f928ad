"""chat_turns.source (migration 0004): which text an assistant turn shows, the LLM's or the facts answer."""

from __future__ import annotations

import pytest

from storage.exceptions import InvalidRecordError
from tests.helpers import open_repository
from tests.unit.api.helpers import make_record


@pytest.fixture
def repo(tmp_path):
    yield from open_repository(f"sqlite:///{tmp_path / 'c.db'}")


def test_assistant_turns_record_their_source(repo):
    repo.upsert_inspections([make_record(0)])
    row = repo.get_inspection_by_frame("f-0")
    repo.add_chat_turn(row.id, "operator", "Where?")
    repo.add_chat_turn(row.id, "assistant", "At the top right.", source="facts")
    repo.add_chat_turn(row.id, "assistant", "Top right.", source="llm")
    assert [(t.role, t.source) for t in repo.chat_turns(row.id)] == [
        ("operator", None), ("assistant", "facts"), ("assistant", "llm")]
    with pytest.raises(InvalidRecordError, match="source must be 'llm', 'facts' or None, got 'template'"):
        repo.add_chat_turn(row.id, "assistant", "x", source="template")


def test_migration_0004_downgrades_and_back(tmp_path):
    import sqlalchemy as sa
    from alembic import command

    from storage.db import Database, alembic_config, head_revision

    database = Database(f"sqlite:///{tmp_path / 'm.db'}")
    assert database.migrate() == head_revision()
    with database.engine.begin() as connection:
        command.downgrade(alembic_config(connection=connection), "0004")
    assert "source" not in {c["name"] for c in sa.inspect(database.engine).get_columns("chat_turns")}
    assert database.migrate() == head_revision()
    assert "source" in {c["name"] for c in sa.inspect(database.engine).get_columns("chat_turns")}
    database.dispose()
