"""Record factories and multi-process workers shared by the storage unit and integration tests."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from storage.records import InspectionRecord, png_from_map, png_from_mask

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def sample_map(seed: int = 0, size_px: int = 16) -> np.ndarray:
    """A small float32 anomaly map in [0, 1]."""
    return np.random.default_rng(seed).random((size_px, size_px), dtype=np.float32)


def make_record(index: int, **overrides: object) -> InspectionRecord:
    """Frame ``f-<index>`` captured ``index`` seconds after T0; every third is flagged."""
    heat = sample_map(index)
    values: dict[str, object] = {
        "frame_id": f"f-{index}",
        "line_id": f"line-{index % 2}",
        "camera_id": f"cam-{index % 3}",
        "product_class": ("bottle", "screw")[index % 2],
        "captured_at": T0 + timedelta(seconds=index),
        "received_at": T0 + timedelta(seconds=index, milliseconds=5),
        "scored_at": T0 + timedelta(seconds=index, milliseconds=40),
        "score": 0.1 + index / 1000,
        "threshold": 0.5,
        "is_anomalous": index % 3 == 0,
        "positions": ["top left", "center"] if index % 3 == 0 else [],
        "region_count": 2 if index % 3 == 0 else 0,
        "verdict": f"verdict {index}",
        "bank_version": 1,
        "latency_ms": 40.0 + index,
        "anomaly_map_png": png_from_map(heat),
        "mask_png": png_from_mask(heat > 0.8),
        "source_topic": "linesight.frames",
        "source_partition": index % 4,
        "source_offset": index,
        "frame_image": b"\xff\xd8jpeg-bytes-%d" % index,
    }
    values.update(overrides)
    return InspectionRecord(**values)  # type: ignore[arg-type]


def run_in_processes(
    target: Callable[..., Any], arguments: list[tuple[Any, ...]], timeout_s: float = 60.0
) -> list[Any]:
    """Run ``target(*args)`` in one spawned process per entry, released together by a barrier.

    Returns the results in order; a child's exception is re-raised here as RuntimeError with its text.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(arguments))
    results = context.Queue()
    processes = [
        context.Process(target=_child, args=(index, target, args, barrier, results))
        for index, args in enumerate(arguments)
    ]
    for process in processes:
        process.start()
    collected = dict(results.get(timeout=timeout_s) for _ in processes)
    for process in processes:
        process.join(timeout_s)
    failures = [
        value for value in collected.values() if isinstance(value, str) and value.startswith("ERROR ")
    ]
    if failures:
        raise RuntimeError("; ".join(failures))
    return [collected[index] for index in range(len(arguments))]


def _child(index: int, target: Callable[..., Any], args: tuple[Any, ...], barrier: Any, results: Any) -> None:
    import storage.db  # noqa: F401  (imports first, so the barrier lines the real work up)
    import storage.repository  # noqa: F401

    barrier.wait()
    try:
        results.put((index, target(*args)))
    except Exception as exc:  # reported to the parent, which raises
        results.put((index, f"ERROR {type(exc).__name__}: {exc}"))


def migrate_worker(url: str) -> str:
    """Migrate ``url`` and return the revision."""
    from storage.db import Database

    database = Database(url)
    try:
        return database.migrate()
    finally:
        database.dispose()


def upsert_worker(url: str, indexes: list[int]) -> list[str]:
    """Upsert records of ``indexes`` in batches of 8; return the inserted frame ids."""
    from storage.db import Database
    from storage.repository import Repository

    database = Database(url)
    try:
        repository = Repository(database)
        inserted: list[str] = []
        for start in range(0, len(indexes), 8):
            inserted += repository.upsert_inspections([make_record(i) for i in indexes[start : start + 8]])
        return inserted
    finally:
        database.dispose()
