"""Optional webhook alert sink: POST each :class:`~connectors.alerts.Alert` as JSON to an HTTP endpoint.

Never silent: each alert is POSTed with a timeout and retried with exponential backoff on
connection errors, timeouts, HTTP 408/425/429 and 5xx. An alert that still fails is counted,
logged with the reason, and :meth:`WebhookSink.flush` raises
:class:`~connectors.exceptions.DeliveryError` naming it. Receivers deduplicate on ``alert_id``
(= ``frame_id``), also sent as the ``X-Linesight-Alert-Id`` header.

In the stream (``LINESIGHT_ALERT_WEBHOOK_URL``; empty = no webhook) the sink stage wraps it in a
:class:`WebhookForwarder`: a background thread with a bounded queue, so a slow or dead endpoint
never holds up the stream. The alert topic stays the system of record (written, flushed and marked
before the webhook sees the alert), so a webhook failure is not retried on replay: deliveries,
failures and queue overflows are counted, logged with the alert id, and exported as metrics.

>>> sink = WebhookSink("https://hooks.example.com/linesight", timeout_s=5.0)  # doctest: +SKIP
>>> sink.send(alert); sink.flush()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
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

__all__ = ["WebhookForwarder", "WebhookSink", "WebhookStats"]

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 425, 429}  # and every 5xx


@dataclass
class WebhookStats:
    """Counters of one sink: alerts delivered, alerts that failed after every attempt, retries made."""

    delivered: int = 0
    failed: int = 0
    retries: int = 0
    dropped: int = 0  # WebhookForwarder only: its queue was full


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

    def count_dropped(self) -> None:
        """An alert meant for this sink was dropped before it reached it (a full queue)."""
        with self._lock:
            self.stats.dropped += 1

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


class WebhookForwarder:
    """Deliver alerts through a :class:`WebhookSink` from a background thread (bounded queue).

    :meth:`put` never blocks: a full queue drops the alert, counts it and logs its id (the alert is
    on the alert topic regardless). ``on_change(stats)`` is called after every attempt, e.g. to
    report counters to the stream's monitor.
    """

    def __init__(
        self, sink: WebhookSink, max_pending: int = 1000, on_change: Callable[[WebhookStats], None] | None = None
    ) -> None:
        if max_pending < 1:
            raise ConnectorError(f"webhook max_pending must be >= 1, got {max_pending}")
        self.sink = sink
        self._queue: queue.Queue[Alert | None] = queue.Queue(max_pending)
        self._on_change = on_change
        self._thread = threading.Thread(target=self._run, name="linesight-webhook", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> WebhookStats:
        return self.sink.stats

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def put(self, alert: Alert) -> bool:
        """Queue ``alert`` for delivery; False (counted, logged) when the queue is full."""
        try:
            self._queue.put_nowait(alert)
            return True
        except queue.Full:
            self.sink.count_dropped()
            log.error("webhook %s: queue full (%d pending); alert %s NOT forwarded (it is on the alert topic)",
                      self.sink.url, self._queue.maxsize, alert.alert_id)
            self._changed()
            return False

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            self.sink.send(alert)
            try:
                self.sink.flush()
            except DeliveryError:
                pass  # counted in stats.failed and logged with the alert id by send()
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self.sink.stats)
            except Exception as exc:  # metrics are best effort; delivery goes on
                log.warning("webhook: could not report counters: %s", exc)

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop the thread; what is left is logged."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("webhook %s: %d alert(s) still queued at shutdown were not forwarded",
                      self.sink.url, self._queue.qsize())
