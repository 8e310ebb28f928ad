"""The repository checks of tests/unit/storage/test_repository.py, run on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from storage.repository import Repository
from tests.unit.storage import test_repository as shared

pytestmark = pytest.mark.integration

# Collect every shared check here too: they then use this module's parametrized ``repo``.
globals().update({name: getattr(shared, name) for name in dir(shared) if name.startswith("test_")})


def test_upsert_of_a_mixed_batch_of_32(repo: Repository):
    """The stream's batch size: half replayed, half new; only the new ids come back, once."""
    from tests.unit.storage.helpers import make_record

    assert len(repo.upsert_inspections([make_record(i) for i in range(0, 32, 2)])) == 16
    batch = [make_record(i) for i in range(32)]
    assert repo.upsert_inspections(batch) == [f"f-{i}" for i in range(1, 32, 2)]
    assert repo.upsert_inspections(batch) == []
    assert repo.count_inspections() == 32
    assert all(repo.get_masks(row.id) is not None for row in repo.history(limit=100))
