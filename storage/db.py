"""The database handle: engine, sessions, transactions and programmatic Alembic migrations.

``Database(url)`` works on SQLite (the embedded default) and PostgreSQL (production). For a SQLite
file it creates the parent folder and turns on WAL with a busy timeout, and write transactions
start with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing. Connection
problems surface as :class:`~storage.exceptions.StorageError` naming the URL (password masked).

>>> db = Database("sqlite://")           # in-memory
>>> db.migrate()  # the newest revision
'0007'
>>> db.dispose()
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session, sessionmaker

from storage.exceptions import DatabaseUnavailableError, MigrationError, StorageError

__all__ = ["Database", "mask_url", "alembic_config", "head_revision", "sqlite_file", "MIGRATIONS_DIR"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a writer waits for SQLite's write lock
POSTGRES_CONNECT_TIMEOUT_S = 10  # how long to wait for a PostgreSQL server to answer
_MIGRATION_LOCK_KEY = 0x6C696E65  # pg_advisory_xact_lock key ("line")
_WRITE_OPTION = "linesight_write"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (also for URLs SQLAlchemy cannot parse).

    >>> mask_url("postgresql+psycopg://app:secret@db:5432/linesight")
    'postgresql+psycopg://app:***@db:5432/linesight'
    """
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def alembic_config(url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """An Alembic config built in code (no ``alembic.ini``): the packaged scripts, this URL/connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows (what :meth:`Database.migrate` upgrades to)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


_head_revision = head_revision


def sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names, or ``None`` (another engine, in-memory, ``file:`` URI).

    >>> sqlite_file("sqlite:///linesight-data/linesight.db")
    PosixPath('linesight-data/linesight.db')
    >>> sqlite_file("postgresql+psycopg://db/linesight") is None
    True
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


class Database:
    """One engine per process; thread-safe; :meth:`dispose` when done."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = mask_url(url)  # never holds the password
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise DatabaseUnavailableError(
                f"malformed database URL {self.url!r}: expected e.g. 'sqlite:///linesight-data/linesight.db' "
                "or 'postgresql+psycopg://user:password@host:5432/name'"
            ) from None
        self.dialect_name = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": self.dialect_name != "sqlite"}
        if self.dialect_name == "sqlite":
            kwargs.update(self._sqlite_options(parsed))
        elif self.dialect_name == "postgresql" and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        try:
            self.engine = sa.create_engine(parsed, **kwargs)
        except (sa.exc.NoSuchModuleError, ImportError, sa.exc.ArgumentError) as exc:
            raise DatabaseUnavailableError(f"cannot use database URL {self.url!r}: {exc}") from None
        if self.dialect_name == "sqlite":
            self._install_sqlite_hooks()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    # --- SQLite ------------------------------------------------------------------------------
    def _sqlite_options(self, parsed: sa.URL) -> dict[str, Any]:
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or "mode=memory" in database
        options: dict[str, Any] = {
            "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        }
        if in_memory:
            options["poolclass"] = sa.pool.StaticPool  # one shared connection, or each would see its own DB
        elif not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailableError(f"cannot create the folder of {self.url!r}: {exc}") from None
        return options

    def _install_sqlite_hooks(self) -> None:
        @sa.event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across app crashes, fast commits
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()

        @sa.event.listens_for(self.engine, "begin")
        def _on_begin(connection: sa.Connection) -> None:
            write = connection.get_execution_options().get(_WRITE_OPTION, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    # --- connections -------------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[sa.Connection]:
        """A Core connection inside one transaction: committed on success, rolled back on error.

        ``write=True`` takes SQLite's write lock up front (no lock-upgrade failures under concurrency).

        >>> with Database("sqlite://").transaction() as conn:
        ...     conn.execute(sa.text("SELECT 1")).scalar()
        1
        """
        try:
            connection = self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise DatabaseUnavailableError(f"cannot connect to {self.url!r}: {_first_line(exc)}") from None
        try:
            if write:
                connection = connection.execution_options(**{_WRITE_OPTION: True})
            with connection.begin():
                yield connection
        except sa.exc.DBAPIError as exc:
            raise StorageError(f"database error on {self.url!r}: {_first_line(exc)}") from exc
        finally:
            connection.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session in one transaction: committed on success, rolled back on error."""
        try:
            with self._sessions.begin() as session:
                yield session
        except sa.exc.DBAPIError as exc:
            raise StorageError(f"database error on {self.url!r}: {_first_line(exc)}") from exc

    def ping(self) -> None:
        """Connect once; :class:`DatabaseUnavailableError` naming the URL if the server does not answer."""
        with self.transaction() as connection:
            connection.execute(sa.text("SELECT 1"))

    # --- migrations --------------------------------------------------------------------------
    def migrate(self) -> str:
        """Upgrade the schema to the newest revision and return it; idempotent and multi-process safe.

        Concurrent callers serialise on SQLite's write lock (``BEGIN IMMEDIATE``) or on a
        PostgreSQL transaction-level advisory lock; the later ones find the schema current.
        """
        head = _head_revision()
        try:
            with self.transaction(write=True) as connection:
                if self.dialect_name == "postgresql":
                    connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                    )
                if MigrationContext.configure(connection).get_current_revision() != head:
                    command.upgrade(alembic_config(connection=connection), "head")
        except DatabaseUnavailableError:
            raise
        except Exception as exc:
            raise MigrationError(
                f"migrating {self.url!r} to revision {head} failed: {_first_line(exc)}"
            ) from exc
        return head

    def current_revision(self) -> str | None:
        """The schema revision the database is at (``None`` for an empty database)."""
        with self.transaction() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()


def _use_wal(cursor: Any) -> None:
    """Put the SQLite file in WAL mode, waiting out a concurrent writer (up to the busy timeout).

    Switching the journal mode needs the file to itself and does not always go through SQLite's busy
    handler: processes opening a new file together (several migrating at once) could fail at connect
    with "database is locked" on a loaded host (seen once in `make test`). A file already in WAL
    mode is left alone; a locked switch is retried.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
