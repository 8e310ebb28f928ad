"""The dead-letter ledger: recorded once per source record, found again on replay, told apart from
another record at a reused position (migration 0006). Also run on PostgreSQL by
tests/integration/storage/test_review_engines.py."""

from __future__ import annotations

from datetime import datetime

import pytest

from storage.dead_letters import DeadLetterEntry, DeadLetterKey, count_dead_letters
from storage.exceptions import InvalidRecordError

SHA_A, SHA_B = "a" * 64, "b" * 64


def test_a_dead_letter_is_recorded_once_and_found_on_replay(repo):
    first = [DeadLetterEntry(DeadLetterKey("frames", 0, 7, SHA_A), "not_an_image", "12 bytes"),
             DeadLetterEntry(DeadLetterKey("frames", 1, 7, SHA_A), "oversize", "2 MB")]
    assert repo.record_dead_letters(first) == 2
    assert repo.record_dead_letters(first) == 0  # the replay writes nothing
    assert repo.record_dead_letters(first[:1] * 3) == 0  # nor does a batch naming it three times
    asked = [DeadLetterKey("frames", 0, 7, SHA_A), DeadLetterKey("frames", 0, 8, SHA_A),
             DeadLetterKey("frames", 1, 7, SHA_A), DeadLetterKey("other", 0, 7, SHA_A)]
    assert repo.recorded_dead_letters(asked) == {asked[0], asked[2]}
    assert count_dead_letters(repo.database) == 2
    assert count_dead_letters(repo.database, topic="other") == 0


def test_another_record_at_a_reused_position_is_not_a_replay(repo):
    """A topic recreated (or a memory-only broker restarted) numbers offsets from 0 again."""
    old, new = DeadLetterKey("frames", 0, 0, SHA_A), DeadLetterKey("frames", 0, 0, SHA_B)
    repo.record_dead_letters([DeadLetterEntry(old, "not_an_image")])
    assert repo.recorded_dead_letters([new]) == set()
    assert repo.record_dead_letters([DeadLetterEntry(new, "oversize")]) == 1
    assert repo.recorded_dead_letters([old, new]) == {old, new}


def test_many_offsets_are_looked_up_in_chunks(repo):
    keys = [DeadLetterKey("frames", 2, offset, SHA_A) for offset in range(1200)]
    assert repo.record_dead_letters([DeadLetterEntry(k, "undecodable") for k in keys[::2]]) == 600
    assert repo.recorded_dead_letters(keys) == set(keys[::2])


@pytest.mark.parametrize("key", [DeadLetterKey("", 0, 1, SHA_A), DeadLetterKey("t", -1, 1, SHA_A),
                                 DeadLetterKey("t", 0, -1, SHA_A), DeadLetterKey("t", 0, 1, "abc")])
def test_a_bad_key_is_refused_naming_it(repo, key):
    with pytest.raises(InvalidRecordError, match="dead-letter key"):
        repo.record_dead_letters([DeadLetterEntry(key, "oversize")])


def test_a_bad_reason_or_naive_time_is_refused(repo):
    from storage.dead_letters import record_dead_letters

    key = DeadLetterKey("t", 0, 1, SHA_A)
    with pytest.raises(InvalidRecordError, match="reason must be 1-64 characters, got ''"):
        repo.record_dead_letters([DeadLetterEntry(key, "")])
    with pytest.raises(InvalidRecordError, match="naive"):
        record_dead_letters(repo.database, [DeadLetterEntry(key, "oversize")], at=datetime(2026, 1, 1))


def test_migration_0006_downgrades_and_back(tmp_path):
    import sqlalchemy as sa
    from alembic import command

    from storage.db import Database, alembic_config, head_revision

    database = Database(f"sqlite:///{tmp_path / 'm.db'}")
    assert database.migrate() == head_revision()
    with database.engine.begin() as connection:
        command.downgrade(alembic_config(connection=connection), "0005")
    assert "dead_letters" not in sa.inspect(database.engine).get_table_names()
    assert database.migrate() == head_revision()
    assert "dead_letters" in sa.inspect(database.engine).get_table_names()
    database.dispose()
