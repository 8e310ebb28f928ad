"""Sink base (quix-streams style): ``send`` many, ``flush`` once, then the caller commits offsets.

:class:`ProducerSink` writes to one Kafka topic through a producer it does not own, records every
delivery failure reported by the producer's futures, and makes :meth:`ProducerSink.flush` raise
:class:`DeliveryError` if any record was not delivered: nothing is dropped silently.

Given ``renew`` (a function making a new producer), a sink replaces its producer after a failed
flush, at its next send: a producer that lost its broker (an idempotent producer whose id the
restarted broker no longer knows fails every later send) does not fail forever. The sink then owns
the producers it made: :attr:`ProducerSink.producer` is the current one, for its owner to close.

>>> class ListSink(Sink):
...     def __init__(self): self.items = []
...     def send(self, item): self.items.append(item)
>>> sink = ListSink(); sink.send(1); sink.flush(); sink.items
[1]
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

from connectors.exceptions import ConnectorError, DeliveryError

__all__ = ["ProducerSink", "Sink"]

log = logging.getLogger(__name__)


class Sink(ABC):
    """Where processed items go. ``flush`` makes everything sent so far durable (or raises)."""

    @abstractmethod
    def send(self, *args: Any, **kwargs: Any) -> None:
        """Queue one item for delivery."""

    def flush(self, timeout_s: float | None = None) -> None:  # noqa: B027 - optional hook
        """Block until every queued item is delivered; raises when one was not."""

    def close(self) -> None:
        """Flush; the sink must not be used afterwards."""
        self.flush()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ProducerSink(Sink):
    """A sink writing to ``topic`` with a caller-owned ``KafkaProducer`` (closing the sink keeps it open).

    ``renew``: makes a replacement producer after a failed flush (see the module docstring);
    ``flush_timeout_s``: the longest a flush blocks (None: the producer's ``delivery_timeout_ms``).
    """

    def __init__(self, producer: Any, topic: str, *, renew: Callable[[], Any] | None = None,
                 flush_timeout_s: float | None = None) -> None:
        if not topic:
            raise ConnectorError(f"{type(self).__name__} needs a topic name, got {topic!r}")
        if flush_timeout_s is not None and flush_timeout_s <= 0:
            raise ConnectorError(f"flush_timeout_s must be > 0 or None, got {flush_timeout_s}")
        self.producer = producer
        self.topic = topic
        self.sent = 0
        self.renewed = 0  # producers replaced after a failed flush
        self._renew = renew
        self._stale = False  # the last flush failed: make a new producer before the next send
        self._flush_timeout_s = flush_timeout_s
        self._failures: list[tuple[str, BaseException]] = []
        self._lock = threading.Lock()
        self._closed = False

    def warm_up(self, timeout_s: float = 5.0) -> bool:
        """Fetch the topic's metadata now (the producer connects), so the first send does not wait for it.

        Best effort and bounded: returns False (and logs) when the broker does not answer within
        ``timeout_s`` (the producer's own wait, ``max_block_ms``, is a minute); the first send then
        reports the fault as usual.
        """
        failed: list[BaseException] = []

        def fetch() -> None:
            try:
                self.producer.partitions_for(self.topic)
            except Exception as exc:  # noqa: BLE001 - reported below
                failed.append(exc)

        worker = threading.Thread(target=fetch, name=f"warm-up-{self.topic}", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive() or failed:
            why = failed[0] if failed else f"no answer within {timeout_s} s"
            log.warning("%s warm-up: no metadata for topic %r yet: %s", type(self).__name__, self.topic, why)
            return False
        return True

    def _produce(self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]],
                 label: str) -> Any:
        """Hand one record to the producer; returns its future (``succeeded()`` once written); failures are
        recorded for :meth:`flush`."""
        if self._closed:
            raise ConnectorError(f"{type(self).__name__} for topic {self.topic!r} is closed")
        if self._stale:
            self._replace_producer()
        try:
            future = self.producer.send(self.topic, key=key, value=value, headers=headers)
        except KafkaError as exc:  # e.g. MessageSizeTooLargeError, KafkaTimeoutError (buffer full, no metadata)
            self._stale = self._renew is not None
            raise DeliveryError(f"cannot send {label} to topic {self.topic!r}: {exc}") from exc
        future.add_errback(self._record_failure, label, self.renewed)
        self.sent += 1
        return future

    def _replace_producer(self) -> None:
        """Close the failed producer at once (its unsent records fail) and make a new one (may raise)."""
        assert self._renew is not None
        old, self.producer = self.producer, None
        with contextlib.suppress(Exception):
            old.close(timeout=0)
        try:
            self.producer = self._renew()
        except Exception as exc:  # the broker is still away: try again at the next send
            raise DeliveryError(f"cannot make a new producer for topic {self.topic!r}: {exc}") from exc
        self._stale = False
        self.renewed += 1
        log.info("new producer for topic %r after a failed flush (%d so far)", self.topic, self.renewed)

    def _record_failure(self, label: str, producer_number: int, exc: BaseException) -> None:
        with self._lock:
            if producer_number == self.renewed:  # a replaced producer's records were failed already
                self._failures.append((label, exc))

    def flush(self, timeout_s: float | None = None) -> None:
        """Flush the producer; raise :class:`DeliveryError` naming what failed since the last flush.

        ``timeout_s`` defaults to the sink's ``flush_timeout_s``. With ``renew``, a failed flush makes the
        next send use a new producer.
        """
        timeout_s = self._flush_timeout_s if timeout_s is None else timeout_s
        if self.producer is None:  # renewing failed: nothing of the old producer is pending
            self._fail_flush()
            raise DeliveryError(f"no producer for topic {self.topic!r}: the broker was not reachable to make one")
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            self._fail_flush()
            raise DeliveryError(f"flushing topic {self.topic!r} timed out after {timeout_s} s: {exc}") from exc
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            self._fail_flush()
            label, first = failures[0]
            raise DeliveryError(
                f"{len(failures)} record(s) for topic {self.topic!r} were not delivered; first: {label}: {first}"
            )

    def _fail_flush(self) -> None:
        if self._renew is not None:
            self._stale = True
        with self._lock:
            self._failures = []

    def close(self) -> None:
        """Flush and refuse further sends (the producer stays open: its owner closes it)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
