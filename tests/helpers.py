"""Helpers shared by unit and integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator


def open_repository(database_url: str) -> Iterator:
    """A migrated :class:`storage.repository.Repository` for a fixture to yield from; disposed after."""
    from storage.db import Database
    from storage.repository import Repository

    database = Database(database_url)
    database.migrate()
    yield Repository(database)
    database.dispose()
