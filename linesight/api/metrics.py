"""Prometheus ``/metrics``: the stream's figures from the monitor actor, per-line counters from SQL, API requests.

:class:`StreamCollector` is a custom collector: each scrape asks the stream monitor for one
snapshot (``pipeline.stream.monitor``) and, through :class:`LineCounters`, SQL for the inspections,
flagged inspections and alerts stored since the last scrape, by ``line`` and ``product_class``.
Those are counters (they only go up: a purge of old rows does not lower them; they restart at the
stored totals when the process restarts). Latency is a histogram in seconds. Without a running
stream only ``linesight_stream_up 0`` and the SQL counters are exported. ``/metrics`` is served by
``linesight serve`` and, with ``LINESIGHT_METRICS_PORT``, by ``linesight run`` (:func:`serve_metrics`).

>>> from prometheus_client import generate_latest
>>> registry = build_registry(lambda: None)
>>> b"linesight_stream_up 0.0" in generate_latest(registry)
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

__all__ = ["StreamCollector", "LineCounters", "build_registry", "request_counter", "serve_metrics", "LINE_COUNTERS"]

log = logging.getLogger(__name__)

_COUNTERS = (  # snapshot key, metric name (without _total), help
    ("frames_in", "linesight_frames_in", "Frames read from the frames topic"),
    ("frames_stored", "linesight_frames_out", "Frames scored and stored (new rows)"),
    ("frames_redelivered", "linesight_frames_redelivered", "Frames read again after a restart (deduplicated)"),
    ("dead_letters_replayed", "linesight_dead_letters_replayed",
     "Dead letters not sent again on a replay (already in the dead-letter ledger)"),
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


# SQL counters by line and product class: metric name (without _total), help
LINE_COUNTERS = (
    ("linesight_inspections", "Frames scored and stored, by line and product class"),
    ("linesight_inspections_flagged", "Stored frames flagged as anomalous, by line and product class"),
    ("linesight_alerts", "Alerts published (rows marked alerted), by line and product class"),
)


class LineCounters:
    """Per (line, product class) totals read from SQL incrementally: rows with ids above the last seen.

    Each :meth:`read` counts only rows inserted (and alerts marked) since the previous read and
    adds them to totals held here, so the totals never go down when ``linesight purge`` deletes
    old rows. The first read counts every stored row. After a purge that emptied the table, ids
    start again low (SQLite reuses them): the next read notices and counts from there. A row committed with a lower id after a
    higher one was already counted (concurrent writers on PostgreSQL) is missed: the figures are
    for rates and alerts, ``linesight history`` holds the exact record.
    """

    def __init__(self, repository: Callable[[], Any]) -> None:
        import threading

        self._repository = repository
        self._lock = threading.Lock()  # two scrapes at once must not count the same rows twice
        self._last_id = 0
        self._last_alert_at: Any = None
        self._totals: dict[str, dict[tuple[str, str], int]] = {name: {} for name, _ in LINE_COUNTERS}

    def read(self) -> dict[str, dict[tuple[str, str], int]]:
        """``{metric name: {(line, product_class): total}}`` after counting what is new in SQL."""
        with self._lock:
            return self._read()

    def _read(self) -> dict[str, dict[tuple[str, str], int]]:
        import sqlalchemy as sa

        from storage.models import Inspection

        t = Inspection.__table__.c
        flagged = sa.func.sum(sa.case((t.is_anomalous.is_(True), 1), else_=0))
        alerted = sa.select(t.line_id, t.product_class, sa.func.count(), sa.func.max(t.alert_sent_at)).where(
            t.alert_sent_at.is_not(None)).group_by(t.line_id, t.product_class)
        if self._last_alert_at is not None:
            alerted = alerted.where(t.alert_sent_at > self._last_alert_at)
        with self._repository().database.transaction() as connection:
            top_id = connection.execute(sa.select(sa.func.max(t.id))).scalar_one_or_none() or 0
            if top_id < self._last_id:  # the newest rows were purged: SQLite will reuse their ids
                self._last_id = top_id
            new_rows = (sa.select(t.line_id, t.product_class, sa.func.count(), flagged, sa.func.max(t.id))
                        .where(t.id > self._last_id).group_by(t.line_id, t.product_class))
            rows = connection.execute(new_rows).all()
            alerts = connection.execute(alerted).all()
        stored, flags, sent = (self._totals[name] for name, _ in LINE_COUNTERS)
        for line, cls, count, flagged_count, max_id in rows:
            stored[(line, cls)] = stored.get((line, cls), 0) + int(count)
            flags[(line, cls)] = flags.get((line, cls), 0) + int(flagged_count or 0)
            self._last_id = max(self._last_id, int(max_id))
        for line, cls, count, last_at in alerts:
            sent[(line, cls)] = sent.get((line, cls), 0) + int(count)
            if self._last_alert_at is None or last_at > self._last_alert_at:
                self._last_alert_at = last_at
        for (line, cls) in stored:  # every series exists for every line/class seen, zeros included
            flags.setdefault((line, cls), 0)
            sent.setdefault((line, cls), 0)
        return {name: dict(values) for name, values in self._totals.items()}


class StreamCollector:
    """Collects on every scrape; a failing source is logged and left out, never a failed scrape."""

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any] | None],
        repository: Callable[[], Any] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._lines = LineCounters(repository) if repository is not None else None

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
        if self._lines is not None:
            try:
                totals = self._lines.read()
            except Exception as exc:
                log.warning("metrics: SQL counts failed: %s", exc)
            else:
                for name, text in LINE_COUNTERS:
                    family = CounterMetricFamily(name, text, labels=["line", "product_class"])
                    for (line, cls), count in sorted(totals[name].items()):
                        family.add_metric([line, cls], float(count))
                    yield family


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
    if buckets:  # the monitor keeps milliseconds; Prometheus wants base units
        ordered = sorted(buckets.items(), key=lambda kv: float("inf") if kv[0] == "+Inf" else float(kv[0]))
        latency = HistogramMetricFamily(
            "linesight_frame_latency_seconds", "Capture-to-stored latency of frames in seconds"
        )
        latency.add_metric(
            [],
            [("+Inf" if bound == "+Inf" else floatToGoString(float(bound) / 1000.0), float(count))
             for bound, count in ordered],
            sum_value=float(snap.get("latency_ms_sum", 0.0)) / 1000.0,
        )
        yield latency
    updated = snap.get("updated_at")
    if updated:
        from datetime import datetime

        stamp = GaugeMetricFamily("linesight_stream_updated_timestamp_seconds", "When the stream last reported")
        stamp.add_metric([], datetime.fromisoformat(updated).timestamp())
        yield stamp


def build_registry(
    snapshot: Callable[[], dict[str, Any] | None], repository: Callable[[], Any] | None = None
) -> CollectorRegistry:
    """A registry of its own (not the process-global one) holding a :class:`StreamCollector`.

    ``repository`` returns the :class:`storage.repository.Repository` to count from (called on each
    scrape, so a lazily opened one is fine); ``None`` exports no SQL counters.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StreamCollector(snapshot, repository))
    return registry


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> Any:
    """Serve ``registry`` as Prometheus text at ``http://host:port/metrics`` in a daemon thread.

    Returns the HTTP server (``shutdown()`` stops it). A port in use is a ConfigError naming it.
    """
    from linesight.errors import ConfigError

    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve /metrics on {host}:{port} (LINESIGHT_METRICS_PORT): {exc}") from None
    return server


def request_counter(registry: CollectorRegistry) -> Counter:
    """``linesight_api_requests_total{method, route, status}`` in ``registry``."""
    return Counter(
        "linesight_api_requests", "HTTP requests answered by the API", ["method", "route", "status"],
        registry=registry,
    )
