"""Prometheus ``/metrics``: the stream's figures from the monitor actor, stored counts from SQL, API requests.

:class:`StreamCollector` is a custom collector: each scrape asks the stream monitor for one
snapshot (``pipeline.monitor``) and SQL for the stored and flagged counts, so nothing is cached
and a restarted API never reports stale totals. Without a running stream only
``linesight_stream_up 0`` and the SQL figures are exported.

>>> from prometheus_client import generate_latest
>>> registry = build_registry(lambda: None, lambda: (3, 1))
>>> b"linesight_inspections_flagged 1.0" in generate_latest(registry)
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

__all__ = ["StreamCollector", "build_registry", "request_counter"]

log = logging.getLogger(__name__)

_COUNTERS = (  # snapshot key, metric name (without _total), help
    ("frames_in", "linesight_frames_in", "Frames read from the frames topic"),
    ("frames_stored", "linesight_frames_out", "Frames scored and stored (new rows)"),
    ("frames_redelivered", "linesight_frames_redelivered", "Frames read again after a restart (deduplicated)"),
    ("alerts_sent", "linesight_alerts_sent", "Alerts published"),
    ("bank_swaps", "linesight_bank_swaps", "Hot swaps of a class's active bank seen by the stream"),
    ("ingest_restarts", "linesight_ingest_restarts", "Ingest loops restarted by the supervisor"),
    ("inference_errors", "linesight_poison_frames", "Frames that failed alone on live inference actors"),
    ("batch_retries", "linesight_batch_retries", "Batch attempts sent again after a failure"),
    ("verdict_skipped", "linesight_llm_verdicts_skipped", "Flagged frames whose LLM verdict was skipped"),
    ("verdicts_written", "linesight_llm_verdicts_written", "LLM verdicts accepted and stored"),
    ("verdicts_rejected", "linesight_llm_verdicts_rejected", "LLM verdicts rejected (contradicted the detector)"),
    ("webhook_delivered", "linesight_webhook_delivered", "Alerts delivered to the alert webhook"),
    ("webhook_failed", "linesight_webhook_failed", "Alerts the webhook refused after every retry"),
    ("webhook_dropped", "linesight_webhook_dropped", "Alerts not forwarded to the webhook: its queue was full"),
)
_GAUGES = (
    ("verdict_backlog", "linesight_llm_verdict_backlog", "Flagged frames waiting for an LLM verdict"),
    ("ingest_running", "linesight_ingest_running", "Ingest loops running now"),
)


class StreamCollector:
    """Collects on every scrape; a failing source is logged and left out, never a failed scrape."""

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any] | None],
        sql_counts: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._sql_counts = sql_counts

    def collect(self) -> Iterator[Metric]:
        """Metric families of this scrape."""
        try:
            snap = self._snapshot()
        except Exception as exc:
            log.warning("metrics: stream snapshot failed: %s", exc)
            snap = None
        up = GaugeMetricFamily("linesight_stream_up", "1 when the stream monitor answered this scrape")
        up.add_metric([], 1.0 if snap else 0.0)
        yield up
        if snap:
            yield from _stream_families(snap)
        if self._sql_counts is not None:
            try:
                stored, flagged = self._sql_counts()
            except Exception as exc:
                log.warning("metrics: SQL counts failed: %s", exc)
            else:
                yield GaugeMetricFamily("linesight_inspections_stored", "Inspections stored in SQL", value=stored)
                yield GaugeMetricFamily("linesight_inspections_flagged", "Flagged inspections in SQL", value=flagged)


def _stream_families(snap: dict[str, Any]) -> Iterator[Metric]:
    for key, name, text in _COUNTERS:
        yield CounterMetricFamily(name, text, value=float(snap.get(key, 0) or 0))
    for key, name, text in _GAUGES:
        yield GaugeMetricFamily(name, text, value=float(snap.get(key, 0) or 0))
    dead = CounterMetricFamily("linesight_dead_lettered", "Frames sent to the dead-letter topic", labels=["reason"])
    for reason, count in sorted((snap.get("dead_lettered") or {}).items()):
        dead.add_metric([str(reason)], float(count))
    yield dead
    faults = CounterMetricFamily("linesight_infra_faults", "Attempts failed by an infrastructure fault (retried)",
                                 labels=["kind"])
    for kind, count in sorted((snap.get("fault_kinds") or {}).items()):
        faults.add_metric([str(kind)], float(count))
    yield faults
    active = GaugeMetricFamily("linesight_stream_fault_active", "1 while the stream holds on this fault",
                               labels=["kind"])
    for kind in sorted(snap.get("faults_active") or {}):
        active.add_metric([str(kind)], 1.0)
    yield active
    restarts = CounterMetricFamily("linesight_actor_restarts", "Actors recreated by the supervisor",
                                   labels=["actor"])
    for role, count in sorted((snap.get("actor_restarts") or {}).items()):
        restarts.add_metric([str(role)], float(count))
    yield restarts
    by_bank = CounterMetricFamily("linesight_bank_frames", "Frames scored per bank version", labels=["bank"])
    for key, count in sorted((snap.get("bank_versions") or {}).items()):
        by_bank.add_metric([str(key)], float(count))
    yield by_bank
    buckets = snap.get("latency_ms_buckets") or {}
    if buckets:
        ordered = sorted(buckets.items(), key=lambda kv: float("inf") if kv[0] == "+Inf" else float(kv[0]))
        latency = HistogramMetricFamily(
            "linesight_frame_latency_ms", "Capture-to-stored latency of frames in milliseconds"
        )
        latency.add_metric(
            [],
            [(floatToGoString(float(bound)), float(count)) for bound, count in ordered],
            sum_value=float(snap.get("latency_ms_sum", 0.0)),
        )
        yield latency
    updated = snap.get("updated_at")
    if updated:
        from datetime import datetime

        stamp = GaugeMetricFamily("linesight_stream_updated_timestamp_seconds", "When the stream last reported")
        stamp.add_metric([], datetime.fromisoformat(updated).timestamp())
        yield stamp


def build_registry(
    snapshot: Callable[[], dict[str, Any] | None], sql_counts: Callable[[], tuple[int, int]] | None = None
) -> CollectorRegistry:
    """A registry of its own (not the process-global one) holding a :class:`StreamCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StreamCollector(snapshot, sql_counts))
    return registry


def request_counter(registry: CollectorRegistry) -> Counter:
    """``linesight_api_requests_total{method, route, status}`` in ``registry``."""
    return Counter(
        "linesight_api_requests", "HTTP requests answered by the API", ["method", "route", "status"],
        registry=registry,
    )
