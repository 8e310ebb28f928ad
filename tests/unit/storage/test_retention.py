"""Retention: the purge plan, the purge (masks and chat turns go too), frames stored only when flagged."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.exceptions import InvalidRecordError, StorageError
from storage.repository import Repository
from storage.retention import plan_purge, purge, storage_cost, vacuum
from tests.unit.storage.helpers import T0, make_record


def test_the_plan_counts_what_the_purge_deletes(database, repo):
    repo.upsert_inspections([make_record(i) for i in range(10)])  # captured T0 + i s; every third flagged
    old = repo.get_inspection_by_frame("f-1")
    repo.add_chat_turn(old.id, "operator", "where?")
    repo.add_chat_turn(old.id, "assistant", "top left")
    cut = T0 + timedelta(seconds=4)  # f-0..f-3 are older
    plan = plan_purge(database, cut)
    assert plan.inspections == 4
    assert plan.chat_turns == 2
    assert [(g.line_id, g.product_class, g.inspections) for g in plan.groups] == [
        ("line-0", "bottle", 2), ("line-1", "screw", 2)]
    assert plan.groups[0].oldest == T0  # timezone-aware UTC
    assert plan.groups[0].newest == T0 + timedelta(seconds=2)
    assert plan.blob_bytes > 0
    assert repo.count_inspections() == 10  # planning deletes nothing

    assert purge(database, cut, batch_rows=3) == 4  # two chunks
    assert repo.count_inspections() == 6
    assert repo.get_inspection_by_frame("f-3") is None
    assert repo.get_masks(old.id) is None
    assert repo.chat_turns(old.id) == []
    assert repo.get_masks(repo.get_inspection_by_frame("f-4").id) is not None  # newer rows keep everything
    assert purge(database, cut) == 0
    assert vacuum(database) is True


def test_a_naive_cut_off_is_refused(database):
    with pytest.raises(InvalidRecordError, match="naive"):
        plan_purge(database, T0.replace(tzinfo=None))


def test_store_frames_flagged_keeps_the_image_of_flagged_rows_only(database):
    repo = Repository(database, store_frames="flagged")
    repo.upsert_inspections([make_record(i) for i in range(6)])
    kept = {row.frame_id: repo.get_masks(row.id) for row in repo.iter_history()}
    for frame_id, masks in kept.items():
        flagged = int(frame_id[2:]) % 3 == 0
        assert (masks.frame_image is not None) == flagged, frame_id
        assert masks.anomaly_map_png  # score, map and mask are kept for every row
        assert masks.mask_png
    cost = storage_cost(database)
    assert cost.inspections == 6
    assert cost.rows_per_frame == 2.0  # an inspections row and a masks row
    assert cost.frame_image_bytes_per_frame == pytest.approx(
        sum(len(make_record(i).frame_image) for i in (0, 3)) / 6)
    with pytest.raises(StorageError, match="'some'"):
        Repository(database, store_frames="some")
