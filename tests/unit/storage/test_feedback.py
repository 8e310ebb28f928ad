"""Operator feedback and acknowledgements in SQL: latest label wins, idempotent, per-class lists."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.exceptions import InvalidRecordError, NotFoundError
from tests.unit.storage.helpers import T0, make_record


@pytest.fixture
def stored(repo):
    """12 frames f-0..f-11: bottle on even, screw on odd indices, every third (f-0, f-3, ...) flagged."""
    repo.upsert_inspections([make_record(i) for i in range(12)])
    return repo


def test_latest_label_wins_and_history_keeps_every_label(stored):
    first = stored.set_feedback("f-0", "false_alarm", note="glare", actor="ana", at=T0)
    assert (first.label, first.note, first.actor) == ("false_alarm", "glare", "ana")
    second = stored.set_feedback("f-0", "defect", actor="bo", at=T0 + timedelta(minutes=1))
    assert stored.get_feedback("f-0") == second
    assert [row.label for row in stored.feedback_history("f-0")] == ["false_alarm", "defect"]
    assert stored.get_feedback("f-1") is None


def test_same_label_twice_adds_nothing(stored):
    first = stored.set_feedback("f-3", "false-alarm", note="dust")  # the CLI's spelling is accepted
    again = stored.set_feedback("f-3", "false_alarm", note="dust")
    assert again == first
    assert len(stored.feedback_history("f-3")) == 1
    changed_note = stored.set_feedback("f-3", "false_alarm", note="dust on the lens")
    assert changed_note.id != first.id
    assert len(stored.feedback_history("f-3")) == 2


def test_feedback_for_class_lists_frames_by_their_label_in_force(stored):
    stored.set_feedback("f-0", "false_alarm")  # bottle
    stored.set_feedback("f-6", "false_alarm")  # bottle
    stored.set_feedback("f-3", "false_alarm")  # screw
    stored.set_feedback("f-6", "defect")  # changed its mind: no longer a false alarm
    stored.set_feedback("f-2", "defect")  # bottle, missed by the detector
    assert stored.feedback_for_class("bottle", "false_alarm") == ["f-0"]
    assert stored.feedback_for_class("bottle", "defect") == ["f-6", "f-2"]
    assert stored.feedback_for_class("screw", "false_alarm") == ["f-3"]
    assert stored.feedback_for_class("washer", "false_alarm") == []


def test_labelled_frames_carry_the_frame_bytes_and_page_by_feedback_id(stored):
    stored.set_feedback("f-0", "false_alarm")
    frames = stored.labelled_frames("bottle")
    assert [f.frame_id for f in frames] == ["f-0"]
    row = stored.get_inspection_by_frame("f-0")
    assert frames[0].inspection_id == row.id
    assert frames[0].frame_image == b"\xff\xd8jpeg-bytes-0"
    assert (frames[0].score, frames[0].threshold, frames[0].bank_version) == (row.score, row.threshold, 1)
    stored.set_feedback("f-6", "false_alarm")
    newer = stored.labelled_frames("bottle", after_feedback_id=frames[0].feedback_id)
    assert [f.frame_id for f in newer] == ["f-6"]


def test_bad_label_unknown_frame_and_unflagged_false_alarm_are_named(stored):
    with pytest.raises(InvalidRecordError, match="got 'maybe'"):
        stored.set_feedback("f-0", "maybe")
    with pytest.raises(NotFoundError, match="'nope'"):
        stored.set_feedback("nope", "defect")
    with pytest.raises(InvalidRecordError, match="'f-1' was not flagged"):
        stored.set_feedback("f-1", "false_alarm")
    with pytest.raises(InvalidRecordError, match="actor must not be empty"):
        stored.set_feedback("f-0", "defect", actor=" ")
    with pytest.raises(InvalidRecordError, match="note must be 1-2000"):
        stored.set_feedback("f-0", "defect", note="x" * 2001)
    assert stored.feedback_history("f-0") == []


def test_first_acknowledgement_stands(stored):
    assert stored.get_acknowledgement("f-0") is None
    first = stored.acknowledge("f-0", actor="ana", at=T0)
    again = stored.acknowledge("f-0", actor="bo", at=T0 + timedelta(hours=1))
    assert again == first
    assert (first.acknowledged_by, first.acknowledged_at) == ("ana", T0)
    assert set(stored.acknowledgements_by_frame(["f-0", "f-1"])) == {"f-0"}
    with pytest.raises(NotFoundError, match="'nope'"):
        stored.acknowledge("nope")


def test_review_rows_go_with_their_inspection(stored, database):
    """The feedback and acknowledgement tables reference inspections.frame_id ON DELETE CASCADE."""
    import sqlalchemy as sa

    stored.set_feedback("f-0", "false_alarm")
    stored.acknowledge("f-0")
    with database.transaction(write=True) as connection:
        connection.execute(sa.text("DELETE FROM masks WHERE inspection_id IN "
                                   "(SELECT id FROM inspections WHERE frame_id = 'f-0')"))
        connection.execute(sa.text("DELETE FROM inspections WHERE frame_id = 'f-0'"))
    assert stored.get_feedback("f-0") is None
    assert stored.get_acknowledgement("f-0") is None


def test_migration_0003_downgrades_to_0001_and_back(tmp_path):
    import sqlalchemy as sa
    from alembic import command

    from storage.db import Database, alembic_config

    database = Database(f"sqlite:///{tmp_path / 'm.db'}")
    head = database.migrate()
    with database.engine.begin() as connection:
        command.downgrade(alembic_config(connection=connection), "0001")
    assert database.current_revision() == "0001"
    assert not {"feedback", "acknowledgements"} & set(sa.inspect(database.engine).get_table_names())
    assert database.migrate() == head
    assert {"feedback", "acknowledgements"} <= set(sa.inspect(database.engine).get_table_names())
    database.dispose()
