"""Alerts: one JSON message per flagged frame on the alerts topic (key = line id).

The value is :class:`Alert` as JSON; header ``alert.schema_version`` carries its schema version so
consumers can refuse versions they do not know. ``alert_id`` equals ``frame_id``: a replayed alert
has the same id, so downstream systems deduplicate on it.

>>> from datetime import UTC, datetime
>>> now = datetime(2024, 5, 1, tzinfo=UTC)
>>> alert = Alert(frame_id="line-1-7", line_id="line-1", camera_id="cam-1", product_class="brick",
...               captured_at=now, scored_at=now, score=0.8, threshold=0.5, positions=["top left"],
...               region_count=1, verdict="Yes: an anomaly at the top left.", bank_version=2,
...               inspection_id=42, links=alert_links("http://api:8000", 42))
>>> alert.alert_id, alert.links["overlay"]
('line-1-7', 'http://api:8000/api/inspections/42/overlay.png')
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from connectors.exceptions import ConnectorError
from connectors.sinks import ProducerSink

__all__ = [
    "ALERT_SCHEMA_VERSION", "Alert", "AlertSink", "AlertTail", "alert_links", "alert_to_json_line", "format_alert",
]

log = logging.getLogger(__name__)

ALERT_SCHEMA_VERSION = 1


def alert_links(api_base_url: str | None, inspection_id: int | str | None) -> dict[str, str]:
    """Links to the inspection and its overlay in the HTTP API; empty without a base URL or id.

    >>> alert_links("http://api:8000/", 7)["inspection"]
    'http://api:8000/api/inspections/7'
    """
    if not api_base_url or inspection_id is None:
        return {}
    base = f"{api_base_url.rstrip('/')}/api/inspections/{inspection_id}"
    return {"inspection": base, "overlay": f"{base}/overlay.png"}


class Alert(BaseModel):
    """A flagged frame, as published on the alerts topic (schema version 1)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = ALERT_SCHEMA_VERSION
    alert_id: str = ""  # = frame_id (filled in when empty)
    frame_id: str
    line_id: str
    camera_id: str
    product_class: str
    captured_at: datetime
    scored_at: datetime
    score: float
    threshold: float
    positions: list[str] = Field(default_factory=list)  # 3x3 names, largest region first
    region_count: int = Field(0, ge=0)
    regions: list[dict[str, Any]] = Field(default_factory=list)  # full-frame boxes {x, y, width, height, area_px, position}
    frame_width_px: int | None = None  # the boxes' coordinate system
    frame_height_px: int | None = None
    verdict: str
    bank_version: int
    score_source: str | None = None  # "bank" | "zero-shot" | "cold-start" (what scored the frame)
    threshold_method: str | None = None  # how the threshold was set
    inspection_id: int | str | None = None
    links: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_alert_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("alert_id") and data.get("frame_id"):
            data = {**data, "alert_id": data["frame_id"]}
        return data

    @classmethod
    def from_inspection(cls, row: Any, api_base_url: str | None = None) -> Alert:
        """Build an alert from a stored inspection (any object with the inspection's attributes)."""
        inspection_id = getattr(row, "inspection_id", None)
        if inspection_id is None:
            inspection_id = getattr(row, "id", None)
        if inspection_id is None:
            inspection_id = row.frame_id
        return cls(
            frame_id=row.frame_id,
            line_id=row.line_id,
            camera_id=row.camera_id,
            product_class=row.product_class,
            captured_at=row.captured_at,
            scored_at=row.scored_at,
            score=float(row.score),
            threshold=float(row.threshold),
            positions=list(row.positions or []),
            region_count=int(row.region_count),
            regions=[dict(r) for r in (getattr(row, "regions", None) or [])],
            frame_width_px=getattr(row, "frame_width_px", None),
            frame_height_px=getattr(row, "frame_height_px", None),
            verdict=row.verdict,
            bank_version=int(row.bank_version),
            score_source=getattr(row, "score_source", None),
            threshold_method=getattr(row, "threshold_method", None),
            inspection_id=inspection_id,
            links=alert_links(api_base_url, inspection_id),
        )

    def to_json_bytes(self) -> bytes:
        """The Kafka value: UTF-8 JSON."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json_bytes(cls, value: bytes) -> Alert:
        """Parse a Kafka value; :class:`ConnectorError` naming the problem when it is not an alert."""
        try:
            return cls.model_validate_json(value)
        except ValidationError as exc:
            raise ConnectorError(f"not a linesight alert: {exc.errors()[0]['msg']} in {value[:120]!r}") from None


class AlertSink(ProducerSink):
    """Publish :class:`Alert` s to ``topic``; ``flush()`` raises if one was not delivered."""

    def send(self, alert: Alert) -> None:
        """Queue ``alert`` (key = line id, JSON value, header ``alert.schema_version``)."""
        headers = [("alert.schema_version", str(alert.schema_version).encode())]
        self._produce(
            key=alert.line_id.encode(), value=alert.to_json_bytes(), headers=headers, label=f"alert {alert.alert_id}"
        )


def format_alert(alert: Alert) -> str:
    """One readable line for a terminal.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC)
    >>> format_alert(Alert(frame_id="f1", line_id="line-1", camera_id="cam-1", product_class="brick",
    ...     captured_at=t, scored_at=t, score=0.81, threshold=0.5, positions=["center"], region_count=1,
    ...     verdict="Yes.", bank_version=2))
    '2024-05-01 12:00:03 line-1/cam-1 brick@v2 score 0.810 > 0.500 at center (1 region) frame f1: Yes.'
    """
    where = ", ".join(alert.positions) or "unknown position"
    regions = f"{alert.region_count} region{'s' if alert.region_count != 1 else ''}"
    line = (
        f"{alert.captured_at:%Y-%m-%d %H:%M:%S} {alert.line_id}/{alert.camera_id} "
        f"{alert.product_class}@v{alert.bank_version} score {alert.score:.3f} > {alert.threshold:.3f} "
        f"at {where} ({regions}) frame {alert.frame_id}: {alert.verdict}"
    )
    if "inspection" in alert.links:
        line += f" {alert.links['inspection']}"
    return line


class AlertTail:
    """Read alerts from the alerts topic: new ones only, or everything with ``from_beginning=True``.

    Uses a throw-away consumer group reading from the earliest offset (``latest`` is unreliable on
    Tansu) and skips records older than the tail's start unless ``from_beginning``.

    >>> with AlertTail("127.0.0.1:9092", "linesight.alerts") as tail:  # doctest: +SKIP
    ...     for alert in tail.alerts(count=10):
    ...         print(format_alert(alert))
    """

    def __init__(
        self, bootstrap_servers: str, topic: str, *, from_beginning: bool = False,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        """``security``: TLS/SASL options as ``connectors.kafka.security_config`` returns them."""
        from connectors.kafka import make_consumer

        self.topic = topic
        self.from_beginning = from_beginning
        self.skipped = 0  # records on the topic that were not alerts
        self._started_ms = int(time.time() * 1000)
        self._consumer = make_consumer(
            bootstrap_servers, group_id=f"linesight-alerts-tail-{uuid.uuid4().hex[:10]}", security=security
        )
        self._consumer.subscribe([topic])

    def alerts(
        self, count: int | None = None, timeout_s: float | None = None, *, stop: threading.Event | None = None
    ) -> Iterator[Alert]:
        """Yield alerts in arrival order until ``count`` were yielded, ``timeout_s`` seconds have passed or
        ``stop`` is set (checked between polls of at most 200 ms)."""
        yielded = 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while count is None or yielded < count:
            if deadline is not None and time.monotonic() >= deadline:
                return
            if stop is not None and stop.is_set():
                return
            for records in self._consumer.poll(timeout_ms=200).values():
                for record in records:
                    if not self.from_beginning and record.timestamp < self._started_ms:
                        continue
                    try:
                        alert = Alert.from_json_bytes(record.value or b"")
                    except ConnectorError as exc:
                        self.skipped += 1
                        log.warning("skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
                        continue
                    yield alert
                    yielded += 1
                    if count is not None and yielded >= count:
                        return

    def close(self) -> None:
        """Leave the throw-away group."""
        self._consumer.close(autocommit=False)

    def __enter__(self) -> AlertTail:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def alert_to_json_line(alert: Alert) -> str:
    """The ``--json`` output of ``linesight alerts``: one compact JSON object per line."""
    return json.dumps(alert.model_dump(mode="json"), separators=(",", ":"))
