"""The sink stage: store a scored batch in SQL (idempotently), then publish alerts, then report back.

Order matters for at-least-once: rows first (one transaction, upsert keyed by ``frame_id``), then
alerts for flagged rows not yet alerted (flushed, then marked), then the ingest commits offsets.
A replay after a crash inserts nothing and re-sends only alerts that were never marked as sent.
A failed alert flush (the broker away or restarted) fails the write, which the ingest retries; the
next attempt sends through a new producer (:class:`connectors.sinks.ProducerSink` ``renew``).
With LLM verdicts on, the new rows are then handed to the verdict actor, fire and forget.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model.overlay import render_overlay
from pipeline.stream.messages import ScoredFrame, WriteResult

__all__ = ["ResultSink", "SinkConfig", "to_record"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkConfig:
    """What a :class:`ResultSink` needs, built from the settings by the app (:meth:`from_settings`)."""

    database_url: str
    alerts_topic: str
    max_frame_bytes: int
    store_frames: str = "all"  # "all" or "flagged" (storage.repository.Repository)
    kafka_security: Mapping[str, Any] = field(default_factory=dict)
    overlays_dir: Path | None = None  # None: no overlay files
    verdict_sample_normal: float = 0.0
    alert_webhook_url: str | None = None
    alert_webhook_token: str | None = field(default=None, repr=False)
    alert_webhook_queue_size: int = 1000

    @classmethod
    def from_settings(cls, settings: Any) -> SinkConfig:
        """From ``linesight.settings.Settings`` (read by name; nothing here imports it)."""
        token = settings.alert_webhook_token
        return cls(
            database_url=settings.database_url, alerts_topic=settings.alerts_topic,
            max_frame_bytes=settings.max_frame_bytes, store_frames=settings.store_frames,
            kafka_security=dict(settings.kafka_security),
            overlays_dir=settings.overlays_dir if settings.write_overlays else None,
            verdict_sample_normal=settings.verdict_sample_normal, alert_webhook_url=settings.alert_webhook_url,
            alert_webhook_token=token.get_secret_value() if token else None,
            alert_webhook_queue_size=settings.alert_webhook_queue_size,
        )


def to_record(frame: ScoredFrame, stored_at: datetime):
    """The storage row for a scored frame (map and mask as PNG, the frame as received)."""
    from storage.records import InspectionRecord, png_from_map, png_from_mask

    task = frame.task
    return InspectionRecord(
        frame_id=task.frame_id,
        line_id=task.line_id,
        camera_id=task.camera_id,
        product_class=task.product_class,
        captured_at=task.captured_at,
        received_at=task.received_at,
        scored_at=frame.scored_at,
        score=frame.result.score,
        threshold=frame.result.threshold,
        is_anomalous=frame.result.is_anomalous,
        positions=list(frame.result.positions),
        region_count=frame.result.region_count,
        verdict=frame.result.verdict,
        verdict_source="template",
        bank_version=task.bank.version,
        latency_ms=(stored_at - task.captured_at).total_seconds() * 1000.0,
        source_topic=task.topic,
        source_partition=task.partition,
        source_offset=task.offset,
        anomaly_map_png=png_from_map(frame.result.anomaly_map),
        mask_png=png_from_mask(frame.result.mask),
        frame_image=task.image_bytes,
        content_sha256=task.content_sha256 or None,
        regions=tuple(r.to_dict() for r in frame.result.regions),
        frame_width_px=frame.result.frame_size[1] or None,
        frame_height_px=frame.result.frame_size[0] or None,
        score_source=task.bank.score_source,
        threshold_method=getattr(frame.result, "threshold_method", "") or None,
    )


class ResultSink:
    """SQL writer and alert publisher of one ingest loop (a Ray actor in the stream)."""

    def __init__(
        self, config: SinkConfig, bootstrap_servers: str, api_base_url: str | None = None, verdicts: Any | None = None
    ) -> None:
        from connectors.alerts import AlertSink
        from pipeline.stream.adapters import FLUSH_TIMEOUT_S, stream_producer_factory
        from storage.db import Database
        from storage.repository import Repository

        self.repository = Repository(Database(config.database_url), store_frames=config.store_frames)
        new_producer = stream_producer_factory(
            bootstrap_servers, max_request_size=config.max_frame_bytes, security=config.kafka_security
        )
        self.alerts = AlertSink(new_producer(), config.alerts_topic, renew=new_producer,
                                flush_timeout_s=FLUSH_TIMEOUT_S)
        self.api_base_url = api_base_url
        self.overlays_dir: Path | None = config.overlays_dir
        # LLM verdicts: a pipeline.stream.verdicts.VerdictWorker actor handle, or None when llm_verdicts is off
        self.verdicts = verdicts
        self.verdict_sample_normal = config.verdict_sample_normal
        self.webhook = _webhook(config) if config.alert_webhook_url else None

    def ready(self) -> bool:
        """Returns once connected (used to wait for actor start-up).

        Warms up on the way: the modules a scored batch unpickles into are imported (measured: the first
        batch reached a cold sink 1.4 s after it was scored, importing torch), one small query opens
        the database connection and the alert producer fetches the alerts topic's metadata. Best
        effort: a database or broker that is away now is the first write's fault, reported as usual.
        """
        import model.detector  # noqa: F401 - what ScoredFrame.result unpickles into (torch)

        try:
            self.repository.active_banks()
        except Exception as exc:  # noqa: BLE001 - reported by the first write, not here
            log.warning("sink warm-up: the database did not answer yet: %s", exc)
        self.alerts.warm_up()
        return True

    def write(self, frames: list[ScoredFrame]) -> WriteResult:
        """Upsert the batch, alert on new flagged rows, return what happened."""
        from connectors.alerts import Alert

        result = WriteResult()
        if not frames:
            return result
        stored_at = datetime.now(UTC)
        records = [to_record(frame, stored_at) for frame in frames]
        inserted_ids = self.repository.upsert_inspections(records)
        inserted = set(inserted_ids)
        # a frame_id already stored with other bytes is a conflict (the ingest dead-letters it), not a redelivery
        result.conflicts = self.repository.content_conflicts(records, inserted_ids)
        result.stored = len(inserted)
        result.redelivered = len(frames) - len(inserted) - len(result.conflicts)
        first_seen: set[str] = set()
        for frame, record in zip(frames, records, strict=True):
            if frame.task.frame_id in inserted and frame.task.frame_id not in first_seen:
                first_seen.add(frame.task.frame_id)
                result.latencies_ms.append(record.latency_ms)
                result.bank_versions[frame.task.bank.key] = result.bank_versions.get(frame.task.bank.key, 0) + 1
        flagged = [frame.task.frame_id for frame in frames if frame.result.is_anomalous]
        if flagged:
            pending = self.repository.pending_alerts(flagged)
            for row in pending:
                self.alerts.send(Alert.from_inspection(row, api_base_url=self.api_base_url))
            if pending:
                self.alerts.flush()
                self.repository.mark_alerted([row.frame_id for row in pending], datetime.now(UTC))
                result.alerts_sent = len(pending)
                if self.webhook is not None:  # after the topic: the webhook never holds up the stream
                    for row in pending:
                        self.webhook.put(Alert.from_inspection(row, api_base_url=self.api_base_url))
            if self.overlays_dir is not None:
                self._write_overlays([f for f in frames if f.result.is_anomalous and f.task.frame_id in inserted])
        if self.verdicts is not None:  # LLM verdicts: only now, after the rows and the alerts
            self._submit_verdicts(frames, records, inserted)
        return result

    def set_verdicts(self, verdicts: Any | None) -> bool:
        """Hand new LLM verdict jobs to this (recreated) verdict actor from now on."""
        self.verdicts = verdicts
        return True

    def _submit_verdicts(self, frames: list[ScoredFrame], records: list, inserted: set[str]) -> None:
        """Fire and forget: ``submit.remote`` without ``ray.get``, so the sink never waits for the LLM."""
        from pipeline.stream.verdicts import verdict_jobs

        try:
            jobs = verdict_jobs(frames, records, inserted, self.verdict_sample_normal)
            if jobs:
                self.verdicts.submit.remote(jobs)
        except Exception as exc:  # verdicts are optional; the rows and alerts are already done
            log.warning("could not submit %d LLM verdict jobs: %s", len(frames), exc)

    def _write_overlays(self, frames: list[ScoredFrame]) -> None:
        folder = self.overlays_dir
        assert folder is not None
        folder.mkdir(parents=True, exist_ok=True)
        for frame in frames:
            image, result = frame.task.image, frame.result
            height, width = result.anomaly_map.shape
            if image.shape[:2] != (height, width):  # the map's resolution (S x S, or a tiled frame's bounded map)
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            label = f"{frame.task.product_class} {result.score:.3f} > {result.threshold:.3f}"
            overlay = render_overlay(image, result.anomaly_map, result.mask, label=label, full_scale=2 * result.threshold)
            path = folder / f"{frame.task.frame_id}.png"
            cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(overlay), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Flush and close the alert producer; forward what the webhook still has queued."""
        try:
            self.alerts.flush()
        finally:
            if self.alerts.producer is not None:  # the current one (a failed flush replaces it)
                self.alerts.producer.close(timeout=5)
            if self.webhook is not None:
                self.webhook.close()


def _webhook(config: SinkConfig):
    """The optional alert webhook, reporting its counters to the stream's monitor under a unique name."""
    import os
    import uuid

    from connectors.webhook import WebhookForwarder, WebhookSink
    from pipeline.stream.monitor import get_monitor

    sink = WebhookSink(config.alert_webhook_url or "", bearer_token=config.alert_webhook_token)
    source = f"webhook-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    monitor = get_monitor() if _ray_running() else None

    def report(stats) -> None:
        if monitor is not None:
            monitor.report.remote(source, {"webhook_delivered": stats.delivered, "webhook_failed": stats.failed,
                                           "webhook_retries": stats.retries, "webhook_dropped": stats.dropped})

    log.info("alerts are also POSTed to webhook %s", config.alert_webhook_url)
    return WebhookForwarder(sink, config.alert_webhook_queue_size, on_change=report)


def _ray_running() -> bool:
    import ray

    return ray.is_initialized()
