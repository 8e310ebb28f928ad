"""Measure upsert throughput: ``python -m storage.bench_upsert --url URL [--rows N] [--batch 32]``.

Writes ``--rows`` fresh inspections in batches through :meth:`Repository.upsert_inspections`
(each with a 224x224 anomaly-map PNG and mask PNG like the stream's), then replays them once,
and prints rows/s for both. Use a throwaway database: the rows stay.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime

import cv2
import numpy as np

from storage.db import Database
from storage.records import InspectionRecord, png_from_map, png_from_mask
from storage.repository import Repository

__all__ = ["synthetic_records", "main"]


def synthetic_records(count: int, size_px: int = 224, seed: int = 0) -> list[InspectionRecord]:
    """``count`` records with smooth maps (one blob each) as PNGs, one in five flagged."""
    rng = np.random.default_rng(seed)
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    maps = []
    for _ in range(8):  # a few distinct maps, reused: encoding is not what is measured
        heat = np.zeros((size_px, size_px), np.float32)
        x, y = rng.integers(20, size_px - 20, size=2)
        cv2.circle(heat, (int(x), int(y)), int(rng.integers(5, 20)), 1.0, -1)
        heat = cv2.GaussianBlur(heat, (0, 0), 6.0)
        heat /= max(float(heat.max()), 1e-6)
        maps.append((png_from_map(heat), png_from_mask(heat > 0.5)))
    records = []
    for index in range(count):
        map_png, mask_png = maps[index % len(maps)]
        records.append(
            InspectionRecord(
                frame_id=f"bench-{run}-{index}",
                line_id=f"line-{index % 4}",
                camera_id="cam-0",
                product_class=("bottle", "screw", "tile")[index % 3],
                captured_at=now,
                received_at=now,
                scored_at=now,
                score=float(rng.random()),
                threshold=0.5,
                is_anomalous=index % 5 == 0,
                positions=("center",) if index % 5 == 0 else (),
                region_count=int(index % 5 == 0),
                verdict="No anomaly detected.",
                bank_version=1,
                latency_ms=12.5,
                anomaly_map_png=map_png,
                mask_png=mask_png,
                source_topic="linesight.frames",
                source_partition=index % 4,
                source_offset=index,
            )
        )
    return records


def _rate(repository: Repository, records: list[InspectionRecord], batch: int) -> tuple[float, int]:
    started = time.perf_counter()
    inserted = 0
    for start in range(0, len(records), batch):
        inserted += len(repository.upsert_inspections(records[start : start + batch]))
    return len(records) / (time.perf_counter() - started), inserted


def main(argv: list[str] | None = None) -> int:
    """Print fresh-insert and replay throughput for one database URL."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of a throwaway database")
    parser.add_argument("--rows", type=int, default=6400, help="rows to write (default 6400)")
    parser.add_argument("--batch", type=int, default=32, help="rows per upsert call (default 32)")
    args = parser.parse_args(argv)
    database = Database(args.url)
    database.migrate()
    repository = Repository(database)
    records = synthetic_records(args.rows)
    png_bytes = len(records[0].anomaly_map_png) + len(records[0].mask_png)
    fresh, inserted = _rate(repository, records, args.batch)
    replay, reinserted = _rate(repository, records, args.batch)
    print(
        f"{database.url}: batch {args.batch}, {args.rows} rows, {png_bytes} PNG bytes/row: "
        f"fresh {fresh:,.0f} rows/s ({inserted} inserted), replay {replay:,.0f} rows/s ({reinserted} inserted)"
    )
    database.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
