"""Database: SQLite setup, URL errors, programmatic migrations (idempotent, multi-process)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.db import Database, alembic_config, mask_url
from storage.exceptions import DatabaseUnavailableError, StorageError
from storage.models import Base
from tests.unit.storage.helpers import migrate_worker, run_in_processes, upsert_worker

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()  # the newest migration


def schema_differences(database: Database) -> list:
    """What autogenerate would change to make the migrated schema match the models."""
    with database.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_sqlite_creates_folder_and_enables_wal(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}")
    assert database.migrate() == HEAD
    assert (tmp_path / "a" / "b" / "x.db").exists()
    with database.transaction() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.dispose()


def test_migrate_is_idempotent_and_matches_models(database):
    assert database.current_revision() == HEAD
    assert database.migrate() == HEAD
    assert schema_differences(database) == []
    tables = set(sa.inspect(database.engine).get_table_names())
    assert {"inspections", "masks", "banks", "chat_turns", "feedback", "acknowledgements", "alembic_version"} <= tables


def test_in_memory_sqlite_shares_one_database():
    database = Database("sqlite://")
    database.migrate()
    assert database.current_revision() == HEAD
    database.dispose()


def test_alembic_config_needs_no_ini_file():
    config = alembic_config("sqlite:///x.db")
    assert config.config_file_name is None
    assert config.get_main_option("script_location").endswith("storage/migrations")


def test_migrate_from_several_processes_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    assert run_in_processes(migrate_worker, [(url,)] * 3) == [HEAD] * 3
    database = Database(url)
    assert database.current_revision() == HEAD
    assert schema_differences(database) == []
    database.dispose()


def test_concurrent_overlapping_upserts_store_each_frame_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Database(url).migrate()
    first, second = run_in_processes(upsert_worker, [(url, list(range(0, 40))), (url, list(range(20, 60)))])
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == {f"f-{i}" for i in range(60)}


def test_malformed_url_is_named_without_password():
    with pytest.raises(DatabaseUnavailableError, match="malformed database URL 'not a url'"):
        Database("not a url")
    with pytest.raises(DatabaseUnavailableError, match="nosuchdb") as caught:
        Database("nosuchdb://user:hunter2@host/db")
    assert "hunter2" not in str(caught.value)


def test_unreachable_server_is_named_without_password():
    database = Database("postgresql+psycopg://app:hunter2@127.0.0.1:1/linesight")
    with pytest.raises(DatabaseUnavailableError, match=r"127\.0\.0\.1:1/linesight") as caught:
        database.migrate()
    assert "hunter2" not in str(caught.value)
    assert isinstance(caught.value, StorageError)
    with pytest.raises(DatabaseUnavailableError):
        database.ping()


def test_mask_url_hides_passwords():
    assert mask_url("postgresql+psycopg://app:s3cret@db:5432/x") == "postgresql+psycopg://app:***@db:5432/x"
    assert mask_url("bad://a:s3cret@") == "bad://a:***@"
    assert "s3cret" not in repr(Database("postgresql+psycopg://app:s3cret@db:5432/x"))


def test_session_commits_and_wraps_errors(database):
    from storage.models import ChatTurn

    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ChatTurn)) == 0
    with pytest.raises(StorageError, match="database error"), database.session() as session:
        session.execute(sa.text("SELECT * FROM no_such_table"))


def test_wal_switch_waits_out_a_locked_file_and_skips_a_file_already_in_wal():
    import sqlite3

    from storage.db import _use_wal

    class Cursor:
        def __init__(self, mode, locked_times):
            self.mode, self.locked_times, self.statements = mode, locked_times, []

        def execute(self, sql):
            self.statements.append(sql)
            if sql == "PRAGMA journal_mode = WAL":
                if self.locked_times:
                    self.locked_times -= 1
                    raise sqlite3.OperationalError("database is locked")
                self.mode = "wal"
            return self

        def fetchone(self):
            return (self.mode,)

    busy = Cursor("delete", locked_times=2)
    _use_wal(busy)
    assert busy.mode == "wal"
    assert busy.statements.count("PRAGMA journal_mode = WAL") == 3
    already = Cursor("wal", locked_times=0)
    _use_wal(already)
    assert already.statements == ["PRAGMA journal_mode"]

    class Broken(Cursor):
        def execute(self, sql):
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):  # only a locked file is waited for
        _use_wal(Broken("delete", 0))
