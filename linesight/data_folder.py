"""One data folder: every command finds the database, banks and outputs the demo or a stream used.

``LINESIGHT_DATA_DIR`` (default ``linesight-data``) holds the SQLite file ``linesight.db`` (unless
``LINESIGHT_DATABASE_URL`` names another database), ``banks/``, ``overlays/`` and ``inspect/``.
``linesight demo`` writes into the same folder by default, so ``linesight history`` after
``make demo`` reads the demo's rows.

Commands that only read (history, chat, bank list, purge's dry run) open the database with
:func:`open_database` ``(write=False)``: it never creates a file and never migrates; a missing or
out-of-date database is a :class:`~storage.exceptions.DatabaseMissingError` naming the URL and the
command that creates it. Commands that write open it with ``write=True`` (created and migrated).

>>> from linesight.settings import load_settings
>>> open_database(load_settings(data_dir="/nonexistent"), write=False)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
storage.exceptions.DatabaseMissingError: no linesight database at /nonexistent/linesight.db ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from linesight.errors import ConfigError
from linesight.settings import Settings

__all__ = ["open_database", "open_repository", "prepare_demo_folder", "DEMO_MARKER", "DEMO_ENTRIES"]

DEMO_MARKER = ".linesight-demo"  # written by `linesight demo` into a folder it created
# what the demo makes in its folder, and so what a later demo run deletes (other files stay)
DEMO_ENTRIES = ("linesight.db", "linesight.db-wal", "linesight.db-shm", "banks", "overlays", DEMO_MARKER)

_HOW_TO_CREATE = (
    "create it with `linesight migrate` (or `make demo` / `linesight run`), or point LINESIGHT_DATA_DIR "
    "(or LINESIGHT_DATABASE_URL) at the folder a stream or the demo used"
)


def open_database(settings: Settings, *, write: bool) -> Any:
    """The :class:`storage.db.Database` of ``settings``; ``write=False`` never creates nor migrates.

    Raises :class:`~storage.exceptions.DatabaseMissingError` (read-only: no file, no schema, or an
    older schema revision) naming the URL and how to create or upgrade it.
    """
    from storage.db import Database, head_revision, sqlite_file
    from storage.exceptions import DatabaseMissingError

    url = settings.database_url
    path = sqlite_file(url)
    if not write and path is not None and not path.is_file():
        raise DatabaseMissingError(f"no linesight database at {path}: {_HOW_TO_CREATE}")
    database = Database(url)
    if write:
        database.migrate()
        return database
    revision = database.current_revision()
    if revision is None:
        database.dispose()
        raise DatabaseMissingError(f"{path or database.url} holds no linesight schema: {_HOW_TO_CREATE}")
    if revision != head_revision():
        database.dispose()
        raise DatabaseMissingError(
            f"{path or database.url} is at schema revision {revision}, this linesight needs {head_revision()}: "
            "upgrade it with `linesight migrate`"
        )
    return database


def open_repository(settings: Settings, *, write: bool = False) -> Any:
    """A :class:`storage.repository.Repository` on :func:`open_database` (read-only by default)."""
    from storage.repository import Repository

    return Repository(open_database(settings, write=write))


def prepare_demo_folder(folder: Path) -> list[str]:
    """Make ``folder`` ready for a demo run; returns the names of what an earlier run left and was deleted.

    A folder that does not exist is created; an empty one is used. A folder holding files is reset
    only when it carries the demo's marker (``.linesight-demo``): then the demo's own entries
    (database, banks, overlays) are deleted and anything else (``checkpoint/``, ``inspect/``) stays.
    Any other non-empty folder is refused with a :class:`ConfigError` naming it and what it holds.
    """
    import shutil

    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"demo --out {str(folder)!r} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / DEMO_MARKER).is_file():
            held = sorted(p.name for p in folder.iterdir())
            shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
            raise ConfigError(
                f"demo --out {str(folder)!r} holds files the demo did not create ({shown}; no {DEMO_MARKER} marker): "
                "the demo only resets a folder it made; pass --out with a new or empty folder, or move those files"
            )
        removed = []
        for name in DEMO_ENTRIES:
            entry = folder / name
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.exists():
                entry.unlink()
            else:
                continue
            removed.append(name)
    else:
        removed = []
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEMO_MARKER).write_text("created by `linesight demo`; a later demo run resets this folder's "
                                      "database, banks/ and overlays/\n")
    return removed
