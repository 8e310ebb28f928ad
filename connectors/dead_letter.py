"""The dead-letter sink: frames that cannot be inspected are re-published with the reason (bytewax's err stream).

The original key, value and headers are kept; these headers are added:
``dlq.reason`` (a code from :data:`connectors.schema.BAD_FRAME_REASONS` or ``inference_error``),
``dlq.detail``, ``dlq.source_topic``, ``dlq.source_partition``, ``dlq.source_offset``, ``dlq.failed_at``
(ISO 8601 UTC). A value too large for the producer's ``max_request_size`` (an ``oversize`` frame) is
replaced by an empty value and ``dlq.value_dropped_bytes`` says how large it was; when the record's
own headers are too large too, each header value over ``_MAX_KEPT_HEADER_BYTES`` is emptied and
``dlq.headers_cut`` names them with their sizes. The original stays at its source offset.

>>> sink = DeadLetterSink(producer, "linesight.dead-letter")  # doctest: +SKIP
>>> sink.send(record, "not_an_image", "12 bytes that OpenCV cannot decode")  # doctest: +SKIP
>>> sink.flush()  # raises DeliveryError if a dead letter was not written  # doctest: +SKIP
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connectors.sinks import ProducerSink

__all__ = ["DLQ_HEADERS", "DeadLetterSink"]

DLQ_HEADERS = (
    "dlq.reason", "dlq.detail", "dlq.source_topic", "dlq.source_partition", "dlq.source_offset", "dlq.failed_at",
)
_MAX_DETAIL_CHARS = 1000
_HEADER_ROOM_BYTES = 4096  # space kept for the added headers and record overhead
_MAX_KEPT_HEADER_BYTES = 256  # header values longer than this are emptied when the record would not fit


class DeadLetterSink(ProducerSink):
    """Re-publish bad records to ``topic`` with the reason in headers; ``flush()`` before committing offsets."""

    def __init__(self, producer: Any, topic: str) -> None:
        super().__init__(producer, topic)
        config = getattr(producer, "config", None) or {}
        self._max_value_bytes = int(config.get("max_request_size", 1 << 20)) - _HEADER_ROOM_BYTES
        self.reasons: dict[str, int] = {}

    def send(self, record: Any, reason: str, detail: str) -> None:
        """Queue ``record`` (topic, partition, offset, key, value, headers) for the dead-letter topic."""
        value = bytes(record.value) if record.value is not None else b""
        headers = [
            (name, bytes(v) if v is not None else b"")
            for name, v in (record.headers or [])
            if not name.startswith("dlq.")
        ]
        headers += [
            ("dlq.reason", reason.encode()),
            ("dlq.detail", detail[:_MAX_DETAIL_CHARS].encode("utf-8", "replace")),
            ("dlq.source_topic", str(record.topic).encode()),
            ("dlq.source_partition", str(record.partition).encode()),
            ("dlq.source_offset", str(record.offset).encode()),
            ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        if len(value) > self._max_value_bytes:
            headers.append(("dlq.value_dropped_bytes", str(len(value)).encode()))
            value = b""
        if len(value) + sum(len(n) + len(v) for n, v in headers) > self._max_value_bytes:
            def too_big(name: str, v: bytes) -> bool:
                return not name.startswith("dlq.") and (len(v) > _MAX_KEPT_HEADER_BYTES
                                                        or len(name) > _MAX_KEPT_HEADER_BYTES)

            cut = [(n, len(v)) for n, v in headers if too_big(n, v)]
            headers = [(n, b"" if too_big(n, v) else v) for n, v in headers if len(n) <= _MAX_KEPT_HEADER_BYTES
                       or n.startswith("dlq.")]
            names = ",".join(f"{n[:64]}={size}" for n, size in cut)[:_MAX_DETAIL_CHARS]
            headers.append(("dlq.headers_cut", names.encode("utf-8", "replace")))
        key = bytes(record.key) if record.key is not None else None
        label = f"dead letter of {record.topic}[{record.partition}]@{record.offset} ({reason})"
        self._produce(key=key, value=value, headers=headers, label=label)
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
