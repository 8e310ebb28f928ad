"""Sink base (quix-streams style): ``send`` many, ``flush`` once, then the caller commits offsets.

:class:`ProducerSink` writes to one Kafka topic through a producer it does not own, records every
delivery failure reported by the producer's futures, and makes :meth:`ProducerSink.flush` raise
:class:`DeliveryError` if any record was not delivered: nothing is dropped silently.

>>> class ListSink(Sink):
...     def __init__(self): self.items = []
...     def send(self, item): self.items.append(item)
>>> sink = ListSink(); sink.send(1); sink.flush(); sink.items
[1]
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

from kafka.errors import KafkaError

from connectors.exceptions import ConnectorError, DeliveryError

__all__ = ["ProducerSink", "Sink"]


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
    """A sink writing to ``topic`` with a caller-owned ``KafkaProducer`` (closing the sink keeps it open)."""

    def __init__(self, producer: Any, topic: str) -> None:
        if not topic:
            raise ConnectorError(f"{type(self).__name__} needs a topic name, got {topic!r}")
        self.producer = producer
        self.topic = topic
        self.sent = 0
        self._failures: list[tuple[str, BaseException]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _produce(self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]],
                 label: str) -> None:
        """Hand one record to the producer; failures are recorded for :meth:`flush`."""
        if self._closed:
            raise ConnectorError(f"{type(self).__name__} for topic {self.topic!r} is closed")
        try:
            future = self.producer.send(self.topic, key=key, value=value, headers=headers)
        except KafkaError as exc:  # e.g. MessageSizeTooLargeError, KafkaTimeoutError (buffer full)
            raise DeliveryError(f"cannot send {label} to topic {self.topic!r}: {exc}") from exc
        future.add_errback(self._record_failure, label)
        self.sent += 1

    def _record_failure(self, label: str, exc: BaseException) -> None:
        with self._lock:
            self._failures.append((label, exc))

    def flush(self, timeout_s: float | None = None) -> None:
        """Flush the producer; raise :class:`DeliveryError` naming what failed since the last flush."""
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise DeliveryError(f"flushing topic {self.topic!r} timed out after {timeout_s} s: {exc}") from exc
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            label, first = failures[0]
            raise DeliveryError(
                f"{len(failures)} record(s) for topic {self.topic!r} were not delivered; first: {label}: {first}"
            )

    def close(self) -> None:
        """Flush and refuse further sends (the producer stays open: its owner closes it)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
