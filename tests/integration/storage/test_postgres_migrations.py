"""Migrations and concurrency on a fresh PostgreSQL database (this module's own ``postgres_url``)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage.db import Database
from tests.unit.storage.helpers import migrate_worker, run_in_processes, upsert_worker
from tests.unit.storage.test_db import HEAD, schema_differences

pytestmark = pytest.mark.integration


def test_migrate_from_several_processes_at_once(postgres_url: str):
    assert run_in_processes(migrate_worker, [(postgres_url,)] * 3) == [HEAD] * 3
    database = Database(postgres_url)
    assert database.current_revision() == HEAD
    assert database.migrate() == HEAD
    assert schema_differences(database) == []
    columns = {c["name"]: c for c in sa.inspect(database.engine).get_columns("inspections")}
    assert isinstance(columns["captured_at"]["type"], sa.DateTime)
    assert columns["captured_at"]["type"].timezone
    assert isinstance(columns["id"]["type"], sa.BigInteger)
    database.dispose()


def test_concurrent_overlapping_upserts_store_each_frame_once(postgres_url: str):
    Database(postgres_url).migrate()
    first, second = run_in_processes(
        upsert_worker, [(postgres_url, list(range(100, 140))), (postgres_url, list(range(120, 160)))]
    )
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == {f"f-{i}" for i in range(100, 160)}
