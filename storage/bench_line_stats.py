"""Measure the line screen's SQL: ``python -m storage.bench_line_stats --url URL [--rows N]``.

Inserts ``--rows`` inspection rows (no masks: the aggregates never read them) spread evenly over
the last 8 hours on 4 lines and 3 classes, then times :meth:`Repository.line_status` and
:meth:`Repository.trend` for the last hour (60 s buckets) and the last 8 hours (300 s buckets),
median of 5 runs each. Use a throwaway database: the rows stay.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from storage.db import Database
from storage.models import Inspection
from storage.repository import Repository

__all__ = ["main"]

_SPAN_S = 8 * 3600


def _fill(database: Database, rows: int, now: datetime) -> None:
    run = uuid.uuid4().hex[:8]
    step_s = _SPAN_S / rows
    chunk = 2000
    with database.transaction(write=True) as connection:
        for start in range(0, rows, chunk):
            values = []
            for index in range(start, min(rows, start + chunk)):
                at = now - timedelta(seconds=_SPAN_S - index * step_s)
                values.append({
                    "frame_id": f"lines-{run}-{index}", "line_id": f"line-{index % 4}", "camera_id": "cam-0",
                    "product_class": ("bottle", "screw", "tile")[index % 3], "captured_at": at, "received_at": at,
                    "scored_at": at, "score": 0.3, "threshold": 0.5, "is_anomalous": index % 17 == 0,
                    "positions": [], "region_count": 0, "verdict": "-", "verdict_source": "template",
                    "verdict_note": None, "bank_version": 1, "latency_ms": 10.0, "source_topic": None,
                    "source_partition": None, "source_offset": None, "alert_sent_at": None,
                })
            connection.execute(Inspection.__table__.insert(), values)


def _median_ms(call, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Print the median time of each line-screen query for one database URL."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of a throwaway database")
    parser.add_argument("--rows", type=int, default=200_000, help="rows over the last 8 h (default 200000)")
    args = parser.parse_args(argv)
    database = Database(args.url)
    database.migrate()
    repository = Repository(database)
    now = datetime.now(UTC)
    _fill(database, args.rows, now)
    total = repository.count_inspections()
    tiles = _median_ms(lambda: repository.line_status(now=now))
    hour = _median_ms(lambda: repository.trend(since=now - timedelta(hours=1), until=now, bucket_s=60))
    shift = _median_ms(lambda: repository.trend(since=now - timedelta(hours=8), until=now, bucket_s=300))
    print(f"{database.url}: {total} rows in the table, {args.rows} in the last 8 h: line_status {tiles:.1f} ms, "
          f"trend 1 h/60 s {hour:.1f} ms, trend 8 h/300 s {shift:.1f} ms (median of 5)")
    database.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
