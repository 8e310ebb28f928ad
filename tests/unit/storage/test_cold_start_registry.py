"""Cold start in SQL (migration 0007): score source and threshold method per inspection, a bank's
reference frames, and the registry of classes in cold start."""

from __future__ import annotations

import pytest

from storage.exceptions import InvalidRecordError, NotFoundError
from tests.unit.storage.helpers import make_record


def test_score_source_and_threshold_method_round_trip_and_are_counted(repo):
    records = [
        make_record(0, product_class="washer", bank_version=0, score_source="cold-start",
                    threshold_method="cold-start median+3MAD of 12"),
        make_record(1, product_class="washer", bank_version=0, score_source="cold-start",
                    threshold_method="cold-start warm-up 1/8"),
        make_record(2, product_class="washer", score_source="bank", threshold_method="balanced-accuracy-midpoint"),
        make_record(3, product_class="washer"),  # written as before: no source
    ]
    repo.upsert_inspections(records)
    stored = repo.get_inspection_by_frame("f-0")
    assert (stored.score_source, stored.threshold_method) == ("cold-start", "cold-start median+3MAD of 12")
    assert repo.get_inspection_by_frame("f-3").score_source is None
    assert repo.count_scored("washer", "cold-start") == 2
    assert repo.count_scored("washer", "bank") == 1
    with pytest.raises(InvalidRecordError, match="score_source of frame 'f-9' must be one of .* got 'guess'"):
        make_record(9, score_source="guess")


def test_a_bank_row_keeps_its_reference_frames(repo):
    row = repo.register_bank("washer", 1, "/b/washer/v1.safetensors", "ab" * 32, 2, "efficientnet-lite0",
                             {"threshold": 0.3}, activate=True, reference_frames=["frame-7", "frame-2"])
    assert row.reference_frames == ("frame-7", "frame-2")
    plain = repo.register_bank("washer", 2, "/b/washer/v2.safetensors", "cd" * 32, 2, "efficientnet-lite0",
                               {"threshold": 0.3})
    assert plain.reference_frames is None
    assert [r.reference_frames for r in repo.list_banks("washer")] == [("frame-7", "frame-2"), None]


def test_the_registry_is_idempotent_settles_and_restarts(repo):
    first = repo.register_cold_start("washer", frames=32, shots=4, registered_by="setting")
    again = repo.register_cold_start("washer", frames=64, shots=2, registered_by="cli")
    assert (again.frames, again.shots, again.registered_by) == (32, 4, "setting")  # kept as it was
    assert again.registered_at == first.registered_at
    promoted = repo.settle_cold_start("washer", "promoted", promoted_version=1, detail="references frame-7")
    assert (promoted.state, promoted.promoted_version) == ("promoted", 1)
    assert repo.cold_starts(state="scoring") == []
    restarted = repo.register_cold_start("washer", frames=64, shots=2, registered_by="api", restart=True)
    assert (restarted.state, restarted.frames, restarted.promoted_version) == ("scoring", 64, None)
    assert [c.product_class for c in repo.cold_starts()] == ["washer"]


def test_bad_registrations_name_the_values(repo):
    with pytest.raises(InvalidRecordError, match="frames=6, shots=4"):
        repo.register_cold_start("washer", frames=6, shots=4)
    with pytest.raises(InvalidRecordError, match="registered_by must be one of .* got 'robot'"):
        repo.register_cold_start("washer", frames=8, shots=2, registered_by="robot")
    with pytest.raises(InvalidRecordError, match="state must be one of .* got 'done'"):
        repo.cold_starts(state="done")
    with pytest.raises(NotFoundError, match="'gasket' is not registered for cold start"):
        repo.settle_cold_start("gasket", "cancelled")


def test_migration_0007_downgrades_and_back(tmp_path):
    import sqlalchemy as sa
    from alembic import command

    from storage.db import Database, alembic_config

    database = Database(f"sqlite:///{tmp_path / 'm.db'}")
    database.migrate()
    with database.engine.begin() as connection:
        command.downgrade(alembic_config(connection=connection), "0006")
    inspector = sa.inspect(database.engine)
    assert "cold_starts" not in inspector.get_table_names()
    assert "score_source" not in {c["name"] for c in inspector.get_columns("inspections")}
    assert database.migrate() == "0007"
    inspector = sa.inspect(database.engine)
    assert "reference_frames" in {c["name"] for c in inspector.get_columns("banks")}
    assert "cold_starts" in inspector.get_table_names()
    database.dispose()
