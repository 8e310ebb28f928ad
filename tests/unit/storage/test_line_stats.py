"""Line screen aggregates on SQLite: per-line tiles and trend buckets, against counts made in Python."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.exceptions import InvalidRecordError
from tests.unit.storage.helpers import make_record

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _frames(repo, specs):
    """specs: (line_id, product_class, seconds before NOW, flagged)."""
    records = [
        make_record(i, line_id=line, product_class=cls, captured_at=NOW - timedelta(seconds=ago), is_anomalous=flagged)
        for i, (line, cls, ago, flagged) in enumerate(specs)
    ]
    repo.upsert_inspections(records)


def test_tiles_count_rate_share_and_up_down(repo):
    specs = [("A", "bottle", ago, ago % 20 == 0) for ago in range(1, 121)]  # A: 1 frame/s for 2 min, live
    specs += [("B", "screw", 4000 + ago, True) for ago in reversed(range(5))]  # B: silent for over an hour
    specs += [("C", "bottle", 100 + ago, ago == 0) for ago in range(0, 40, 4)]  # C: stopped 100 s ago
    _frames(repo, specs)
    tiles = {t.line_id: t for t in repo.line_status(now=NOW, rate_window_s=60, share_window_s=3600, down_after_s=30)}
    assert list(tiles) == ["A", "B", "C"]
    a = tiles["A"]
    assert a.is_up
    assert a.last_frame_age_s == pytest.approx(1.0)
    assert a.frames_per_s == pytest.approx(60 / 60)  # captured in [NOW-60 s, ...]: ago 1..60
    assert (a.frames_window, a.flagged_window) == (120, 6)
    assert a.flagged_share == pytest.approx(6 / 120)
    b = tiles["B"]
    assert not b.is_up
    assert b.last_frame_age_s == pytest.approx(4000)
    assert (b.frames_per_s, b.frames_window, b.flagged_share) == (0.0, 0, None)
    c = tiles["C"]
    assert not c.is_up
    assert c.last_frame_age_s == pytest.approx(100)
    assert (c.frames_window, c.flagged_window, c.frames_per_s) == (10, 1, 0.0)


def test_unacknowledged_counts_flagged_frames_nobody_acknowledged(repo):
    _frames(repo, [("A", "bottle", 10 + i, i % 2 == 0) for i in range(8)] + [("A", "bottle", 5000, True)])
    (tile,) = repo.line_status(now=NOW)
    assert (tile.flagged_window, tile.unacknowledged_window) == (4, 4)  # the 5000 s old one is outside
    repo.acknowledge("f-0")
    repo.acknowledge("f-1")  # not flagged: acknowledging it changes nothing here
    repo.acknowledge("f-8")  # outside the window
    (tile,) = repo.line_status(now=NOW)
    assert (tile.frames_window, tile.flagged_window, tile.unacknowledged_window) == (8, 4, 3)


def test_last_frame_is_the_newest_capture_even_when_stored_out_of_order(repo):
    _frames(repo, [("A", "bottle", 10, False), ("A", "bottle", 50, False)])
    (tile,) = repo.line_status(now=NOW)
    assert tile.last_frame_at == NOW - timedelta(seconds=10)


def test_trend_buckets_match_a_count_in_python(repo):
    specs = [(("A", "B")[i % 2], ("bottle", "screw")[i % 3 == 0], 7 * i + 3, i % 5 == 0) for i in range(150)]
    _frames(repo, specs)
    since, until, bucket_s = NOW - timedelta(hours=1), NOW, 300
    expected: dict[tuple, list[int]] = {}
    for line, cls, ago, flagged in specs:
        at = NOW - timedelta(seconds=ago)
        if since <= at < until:
            start = int(at.timestamp()) // bucket_s * bucket_s
            counts = expected.setdefault((datetime.fromtimestamp(start, UTC), line, cls), [0, 0])
            counts[0] += 1
            counts[1] += int(flagged)
    got = repo.trend(since=since, until=until, bucket_s=bucket_s)
    assert {(b.bucket_start, b.line_id, b.product_class): [b.frames, b.flagged] for b in got} == expected
    assert [b.bucket_start for b in got] == sorted(b.bucket_start for b in got)
    only_a = repo.trend(since=since, until=until, bucket_s=bucket_s, line_id="A")
    assert only_a
    assert {b.line_id for b in only_a} == {"A"}
    assert sum(b.frames for b in only_a) == sum(v[0] for k, v in expected.items() if k[1] == "A")


def test_bad_windows_are_named(repo):
    with pytest.raises(InvalidRecordError, match="bucket_s must be a whole number of seconds >= 1, got 0"):
        repo.trend(since=NOW - timedelta(hours=1), until=NOW, bucket_s=0)
    with pytest.raises(InvalidRecordError, match="at most 2000"):
        repo.trend(since=NOW - timedelta(days=30), until=NOW, bucket_s=60)
    with pytest.raises(InvalidRecordError, match="must be after since"):
        repo.trend(since=NOW, until=NOW, bucket_s=60)
    with pytest.raises(InvalidRecordError, match="now must be a timezone-aware"):
        repo.line_status(now=NOW.replace(tzinfo=None))
    with pytest.raises(InvalidRecordError, match="down_after_s must be > 0, got 0"):
        repo.line_status(now=NOW, down_after_s=0)
