"""Repository behaviour; needs a ``repo`` fixture (SQLite here, both engines in tests/integration/storage)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
import sqlalchemy as sa

from storage.exceptions import InvalidRecordError, NotFoundError, StorageError
from storage.records import map_from_png
from tests.unit.storage.helpers import T0, make_record, sample_map

# --- upsert ------------------------------------------------------------------------------------


def test_upsert_returns_new_frame_ids_and_replay_inserts_nothing(repo):
    records = [make_record(i) for i in range(32)]
    assert repo.upsert_inspections(records) == [r.frame_id for r in records]
    assert repo.upsert_inspections(records) == []
    assert repo.count_inspections() == 32


def test_upsert_mixed_batch_returns_only_new_and_keeps_stored_rows(repo):
    repo.upsert_inspections([make_record(i) for i in range(4)])
    replayed = [make_record(i, score=0.99, verdict="changed") for i in range(2, 4)]
    batch = [make_record(10), *replayed, make_record(11)]
    assert repo.upsert_inspections(batch) == ["f-10", "f-11"]
    stored = repo.get_inspection_by_frame("f-3")
    assert stored.verdict == "verdict 3"
    assert stored.score == pytest.approx(make_record(3).score)
    for frame_id in ("f-10", "f-11"):
        assert repo.get_masks(repo.get_inspection_by_frame(frame_id).id) is not None
    assert repo.count_inspections() == 6


def test_upsert_stores_a_frame_id_repeated_in_one_batch_once(repo):
    assert repo.upsert_inspections([make_record(1), make_record(1, verdict="second"), make_record(2)]) == [
        "f-1",
        "f-2",
    ]
    assert repo.get_inspection_by_frame("f-1").verdict == "verdict 1"
    assert repo.count_inspections() == 2


def test_upsert_of_nothing_returns_empty(repo):
    assert repo.upsert_inspections([]) == []


def test_stored_row_matches_record_with_utc_timestamps(repo):
    plus_two = timezone(timedelta(hours=2))
    record = make_record(5, captured_at=datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=plus_two))
    repo.upsert_inspections([record])
    row = repo.get_inspection_by_frame("f-5")
    assert row.captured_at == datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)
    assert row.captured_at.tzinfo == UTC
    assert row.received_at == record.received_at
    assert row.positions == ()
    assert (row.line_id, row.camera_id, row.product_class) == ("line-1", "cam-2", "screw")
    assert (row.source_topic, row.source_partition, row.source_offset) == ("linesight.frames", 1, 5)
    assert row.verdict_source == "template"
    assert row.verdict_note is None
    assert row.alert_sent_at is None
    flagged = repo.upsert_inspections([make_record(6)])
    assert repo.get_inspection_by_frame(flagged[0]).positions == ("top left", "center")


def test_masks_round_trip_as_pngs(repo):
    record = make_record(7)
    repo.upsert_inspections([record])
    masks = repo.get_masks(repo.get_inspection_by_frame("f-7").id)
    assert (masks.width_px, masks.height_px) == (16, 16)
    assert np.abs(masks.anomaly_map() - sample_map(7)).max() <= 1 / 510 + 1e-6
    np.testing.assert_array_equal(masks.mask(), (sample_map(7) > 0.8).astype(np.uint8))
    assert masks.frame_image == record.frame_image
    assert map_from_png(masks.anomaly_map_png).dtype == np.float32


def test_missing_rows_read_as_none(repo):
    assert repo.get_inspection(12345) is None
    assert repo.get_inspection_by_frame("nope") is None
    assert repo.get_masks(12345) is None


def test_get_inspection_by_id_and_frame_agree(repo):
    repo.upsert_inspections([make_record(1), make_record(2)])
    row = repo.get_inspection_by_frame("f-2")
    assert repo.get_inspection(row.id) == row


# --- alerts ------------------------------------------------------------------------------------


def test_pending_alerts_and_mark_alerted(repo):
    repo.upsert_inspections([make_record(i) for i in range(7)])  # flagged: 0, 3, 6
    asked = [f"f-{i}" for i in range(7)] + ["unknown"]
    assert [row.frame_id for row in repo.pending_alerts(asked)] == ["f-0", "f-3", "f-6"]
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert repo.mark_alerted(["f-0", "f-3"], at) == 2
    assert [row.frame_id for row in repo.pending_alerts(asked)] == ["f-6"]
    assert repo.get_inspection_by_frame("f-0").alert_sent_at == at
    assert repo.mark_alerted(["f-0"], at + timedelta(hours=1)) == 0  # first send time is kept
    assert repo.get_inspection_by_frame("f-0").alert_sent_at == at
    assert repo.pending_alerts([]) == []


# --- history and stats -------------------------------------------------------------------------


def test_history_is_newest_first_and_pages_by_id(repo):
    repo.upsert_inspections([make_record(i) for i in range(20)])
    pages, before = [], None
    while True:
        page = repo.history(limit=6, before_id=before)
        if not page:
            break
        pages.append(page)
        before = page[-1].id
    rows = [row for page in pages for row in page]
    assert [len(page) for page in pages] == [6, 6, 6, 2]
    assert [row.frame_id for row in rows] == [f"f-{i}" for i in reversed(range(20))]
    assert [row.id for row in rows] == sorted((row.id for row in rows), reverse=True)


def test_history_filters(repo):
    repo.upsert_inspections([make_record(i) for i in range(12)])

    def frames(**filters):
        return {int(row.frame_id[2:]) for row in repo.history(limit=100, **filters)}

    assert frames(line_id="line-0") == {0, 2, 4, 6, 8, 10}
    assert frames(camera_id="cam-1") == {1, 4, 7, 10}
    assert frames(product_class="screw") == {1, 3, 5, 7, 9, 11}
    assert frames(anomalous=True) == {0, 3, 6, 9}
    assert frames(anomalous=False) == {1, 2, 4, 5, 7, 8, 10, 11}
    assert frames(since=T0 + timedelta(seconds=4), until=T0 + timedelta(seconds=7)) == {4, 5, 6}
    assert frames(line_id="line-1", anomalous=True, product_class="screw") == {3, 9}
    assert frames(line_id="nowhere") == set()
    assert len(repo.history(limit=3)) == 3


def test_history_rejects_naive_times_and_bad_limits(repo):
    with pytest.raises(InvalidRecordError, match="since"):
        repo.history(since=datetime(2026, 1, 1))
    with pytest.raises(InvalidRecordError, match="limit"):
        repo.history(limit=0)


def test_count_and_stats_by_class(repo):
    repo.upsert_inspections([make_record(i) for i in range(12)])
    assert repo.count_inspections() == 12
    assert repo.count_inspections(anomalous=True) == 4
    assert repo.count_inspections(anomalous=False) == 8
    assert repo.count_inspections(product_class="bottle", until=T0 + timedelta(seconds=6)) == 3
    stats = repo.stats_by_class()
    assert set(stats) == {"bottle", "screw"}
    assert (stats["bottle"].total, stats["bottle"].flagged) == (6, 2)  # 0, 6 flagged
    assert (stats["screw"].total, stats["screw"].flagged) == (6, 2)  # 3, 9 flagged
    assert stats["bottle"].mean_latency_ms == pytest.approx(40.0 + 5.0)  # mean of 0, 2, ..., 10
    assert repo.stats_by_class(line_id="line-1").keys() == {"screw"}
    assert repo.stats_by_class(line_id="nowhere") == {}


# --- verdicts ----------------------------------------------------------------------------------


def test_set_verdict(repo):
    repo.upsert_inspections([make_record(3)])
    row = repo.set_verdict("f-3", "A scratch at the top left.", "llm")
    assert (row.verdict, row.verdict_source, row.verdict_note) == ("A scratch at the top left.", "llm", None)
    row = repo.set_verdict("f-3", "template text", "template", note="llm contradicted the detector")
    assert repo.get_inspection_by_frame("f-3") == row
    assert row.verdict_note == "llm contradicted the detector"
    with pytest.raises(NotFoundError, match="'f-404'"):
        repo.set_verdict("f-404", "x", "llm")
    with pytest.raises(InvalidRecordError, match="'oracle'"):
        repo.set_verdict("f-3", "x", "oracle")


# --- banks -------------------------------------------------------------------------------------


def _register(repo, product_class="bottle", activate=False, **overrides):
    values = {
        "product_class": product_class,
        "version": repo.next_bank_version(product_class),
        "path": f"/banks/{product_class}/v.safetensors",
        "sha256": "ab" * 32,
        "shots": 4,
        "encoder": "efficientnet-lite0",
        "calibration": {"threshold": 0.42, "normal_max": 0.3},
        "activate": activate,
    }
    values.update(overrides)
    return repo.register_bank(**values)


def test_bank_versions_count_per_class(repo):
    assert repo.next_bank_version("bottle") == 1
    first = _register(repo)
    assert (first.version, first.active, first.key) == (1, False, "bottle@v1")
    assert first.calibration == {"threshold": 0.42, "normal_max": 0.3}
    assert first.created_at.tzinfo == UTC
    assert repo.next_bank_version("bottle") == 2
    assert repo.next_bank_version("screw") == 1
    assert repo.get_bank("bottle", 1) == first


def test_registering_a_version_twice_names_it(repo):
    _register(repo)
    with pytest.raises(StorageError, match=r"'bottle' version 1"):
        _register(repo, version=1)


def test_activation_keeps_exactly_one_active_per_class(repo):
    _register(repo, activate=True)
    _register(repo)
    _register(repo, product_class="screw", activate=True)
    assert {cls: row.version for cls, row in repo.active_banks().items()} == {"bottle": 1, "screw": 1}
    assert repo.activate_bank("bottle", 2).active
    assert {cls: row.version for cls, row in repo.active_banks().items()} == {"bottle": 2, "screw": 1}
    assert [row.active for row in repo.list_banks("bottle")] == [False, True]
    third = _register(repo, activate=True)
    assert third.active
    assert repo.active_banks()["bottle"].version == 3
    assert [(row.product_class, row.version) for row in repo.list_banks()] == [
        ("bottle", 1),
        ("bottle", 2),
        ("bottle", 3),
        ("screw", 1),
    ]
    assert repo.activate_bank("bottle", 3).active  # re-activating the active version is a no-op


def test_unknown_bank_is_named(repo):
    _register(repo)
    with pytest.raises(NotFoundError, match=r"'bottle' version 9.*\[1\]"):
        repo.activate_bank("bottle", 9)
    with pytest.raises(NotFoundError, match=r"'tile' version 1"):
        repo.get_bank("tile", 1)
    assert repo.active_banks() == {}


def test_database_refuses_two_active_versions_of_a_class(repo):
    _register(repo, activate=True)
    _register(repo)
    with pytest.raises(StorageError), repo.database.transaction(write=True) as connection:
        connection.execute(sa.text("UPDATE banks SET active = true WHERE product_class = 'bottle'"))
    assert repo.active_banks()["bottle"].version == 1


# --- chat --------------------------------------------------------------------------------------


def test_chat_turns_are_numbered_in_order(repo):
    repo.upsert_inspections([make_record(1), make_record(2)])
    first = repo.get_inspection_by_frame("f-1").id
    second = repo.get_inspection_by_frame("f-2").id
    a = repo.add_chat_turn(first, "operator", "Where is the defect?")
    b = repo.add_chat_turn(first, "assistant", "At the top left.")
    c = repo.add_chat_turn(second, "operator", "And here?")
    assert [(t.turn_index, t.role) for t in (a, b, c)] == [(0, "operator"), (1, "assistant"), (0, "operator")]
    assert repo.chat_turns(first) == [a, b]
    assert repo.chat_turns(12345) == []
    with pytest.raises(NotFoundError, match="12345"):
        repo.add_chat_turn(12345, "operator", "hello?")
    with pytest.raises(InvalidRecordError, match="'robot'"):
        repo.add_chat_turn(first, "robot", "beep")


def test_results_are_plain_picklable_values(repo):
    repo.upsert_inspections([make_record(0)])
    row = repo.get_inspection_by_frame("f-0")
    bank = _register(repo, activate=True)
    turn = repo.add_chat_turn(row.id, "operator", "why?")
    for value in (row, bank, turn, repo.get_masks(row.id), repo.stats_by_class()):
        assert pickle.loads(pickle.dumps(value)) == value
