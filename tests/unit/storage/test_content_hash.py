"""The content hash per inspection (migration 0002): redelivery vs a reused frame_id with other bytes."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import command

from storage.db import Database, alembic_config
from storage.repository import Repository
from tests.unit.storage.helpers import make_record


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_same_bytes_is_a_redelivery_and_other_bytes_a_conflict(repo):
    first = make_record(1, content_sha256=_sha(b"a"))
    assert repo.upsert_inspections([first]) == ["f-1"]
    assert repo.get_inspection_by_frame("f-1").content_sha256 == _sha(b"a")
    same = make_record(1, content_sha256=_sha(b"a"))
    other = make_record(1, content_sha256=_sha(b"b"))
    fresh = make_record(2, content_sha256=_sha(b"c"))
    batch = [same, other, fresh]
    inserted = repo.upsert_inspections(batch)
    assert inserted == ["f-2"]
    assert repo.content_conflicts(batch, inserted) == [1]  # only the other bytes
    assert repo.content_conflicts([same], []) == []
    assert repo.count_inspections() == 2  # the conflicting frame stored nothing


def test_a_conflict_inside_one_batch_is_found(repo):
    batch = [make_record(7, content_sha256=_sha(b"x")), make_record(7, content_sha256=_sha(b"y"))]
    inserted = repo.upsert_inspections(batch)
    assert inserted == ["f-7"]
    assert repo.content_conflicts(batch, inserted) == [1]  # the second record, not the stored one


def test_rows_without_a_hash_count_as_redeliveries(repo):
    repo.upsert_inspections([make_record(3)])  # content_sha256=None: stored before migration 0002
    again = [make_record(3, content_sha256=_sha(b"z"))]
    assert repo.content_conflicts(again, repo.upsert_inspections(again)) == []


def test_upgrade_from_0001_keeps_rows_and_adds_an_empty_hash(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    database = Database(url)
    with database.engine.begin() as connection:
        command.upgrade(alembic_config(connection=connection), "0001")
        connection.execute(sa.text(
            "INSERT INTO inspections (frame_id, line_id, camera_id, product_class, captured_at, received_at,"
            " scored_at, score, threshold, is_anomalous, positions, region_count, verdict, verdict_source,"
            " bank_version, latency_ms) VALUES ('old-1', 'l', 'c', 'brick', '2026-01-01 00:00:00',"
            " '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0.1, 0.5, 0, '[]', 0, 'ok', 'template', 1, 5.0)"
        ))
    assert database.migrate() == "0004"  # the newest revision
    row = Repository(database).get_inspection_by_frame("old-1")
    assert row is not None
    assert row.content_sha256 is None
    database.dispose()
