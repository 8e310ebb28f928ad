"""Optional webhook alert sink: POST each :class:`~connectors.alerts.Alert` as JSON to an HTTP endpoint.

Delivery is at-least-once and never silent: each alert is POSTed with a timeout and retried with
exponential backoff on connection errors, timeouts, HTTP 408/429 and 5xx. An alert that still
fails is counted, logged with the reason, and :meth:`WebhookSink.flush` raises
:class:`~connectors.exceptions.DeliveryError` naming it, so the caller does not mark it as sent
(the stream then re-sends it on replay). Receivers deduplicate on ``alert_id`` (= ``frame_id``),
also sent as the ``X-Linesight-Alert-Id`` header.

Proposed setting: ``alert_webhook_url`` (``LINESIGHT_ALERT_WEBHOOK_URL``; empty = no webhook).

>>> sink = WebhookSink("https://hooks.example.com/linesight", timeout_s=5.0)  # doctest: +SKIP
>>> sink.send(alert); sink.flush()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from connectors.alerts import Alert
from connectors.exceptions import ConnectorError, DeliveryError
from connectors.sinks import Sink

__all__ = ["WebhookSink", "WebhookStats"]

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 425, 429}  # and every 5xx


@dataclass
class WebhookStats:
    """Counters of one sink: alerts delivered, alerts that failed after every attempt, retries made."""

    delivered: int = 0
    failed: int = 0
    retries: int = 0


class WebhookSink(Sink):
    """POST alerts to ``url``; ``flush()`` raises if any alert was not delivered since the last flush."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        bearer_token: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConnectorError(f"webhook URL must be http(s)://host/..., got {url!r}")
        if timeout_s <= 0:
            raise ConnectorError(f"webhook timeout_s must be > 0, got {timeout_s}")
        if max_attempts < 1:
            raise ConnectorError(f"webhook max_attempts must be >= 1, got {max_attempts}")
        if backoff_s < 0 or max_backoff_s < backoff_s:
            raise ConnectorError(f"webhook backoff must satisfy 0 <= backoff_s <= max_backoff_s, got {backoff_s}, "
                                 f"{max_backoff_s}")
        self.url = url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = WebhookStats()
        self._bearer_token = bearer_token
        self._sleep = sleep
        self._failures: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r})"

    def send(self, alert: Alert) -> None:
        """POST ``alert`` now, retrying transient failures; a final failure is recorded for :meth:`flush`."""
        body = alert.to_json_bytes()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "linesight-webhook/1",
            "X-Linesight-Alert-Id": alert.alert_id,
            "X-Linesight-Schema-Version": str(alert.schema_version),
        }
        if self._bearer_token:
            headers["Authorization"] = f"Bearer {self._bearer_token}"
        reason = "not attempted"
        for attempt in range(1, self.max_attempts + 1):
            retry, reason = self._post(body, headers)
            if reason is None:
                with self._lock:
                    self.stats.delivered += 1
                return
            if not retry or attempt == self.max_attempts:
                break
            delay_s = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
            with self._lock:
                self.stats.retries += 1
            log.info("webhook %s: alert %s attempt %d failed (%s); retrying in %.2f s",
                     self.url, alert.alert_id, attempt, reason, delay_s)
            self._sleep(delay_s)
        with self._lock:
            self.stats.failed += 1
            self._failures.append((alert.alert_id, reason))
        log.error("webhook %s: alert %s NOT delivered after %d attempt(s): %s",
                  self.url, alert.alert_id, attempt, reason)

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[bool, str | None]:
        """One POST: ``(retry?, reason)``; reason ``None`` means delivered (2xx)."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                response.read(1024)
                return False, None
        except urllib.error.HTTPError as exc:
            status = exc.code
            return status in _RETRY_STATUS or status >= 500, f"HTTP {status} {exc.reason}"
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return True, f"{type(reason).__name__}: {reason}"

    def flush(self, timeout_s: float | None = None) -> None:
        """Raise :class:`DeliveryError` naming the alerts that failed since the last flush (then forget them)."""
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            first_id, first_reason = failures[0]
            raise DeliveryError(
                f"{len(failures)} alert(s) were not delivered to webhook {self.url!r}; "
                f"first: alert {first_id!r}: {first_reason}"
            )
