"""The feedback, acknowledgement, line-screen and dead-letter ledger checks of tests/unit/storage, run on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from storage.db import Database
from storage.repository import Repository
from tests.unit.storage import test_dead_letters, test_feedback, test_line_stats

pytestmark = pytest.mark.integration

# Collect the shared checks here: they then use this module's parametrized ``repo``.
for _module in (test_dead_letters, test_feedback, test_line_stats):
    globals().update({name: getattr(_module, name) for name in dir(_module) if name.startswith("test_")})
stored = test_feedback.stored


@pytest.fixture
def database(repo: Repository) -> Database:
    return repo.database
