"""The dead-letter sink: frames that cannot be inspected are re-published with the reason (bytewax's err stream).

The original key, value and headers are kept; these headers are added:
``dlq.reason`` (a code from :data:`connectors.schema.BAD_FRAME_REASONS` or ``inference_error``),
``dlq.detail``, ``dlq.source_topic``, ``dlq.source_partition``, ``dlq.source_offset``, ``dlq.failed_at``
(ISO 8601 UTC).

A dead letter never blocks the stream: a record too large for the producer's ``max_request_size``
(its value, its headers, or both) is cut until it fits, in this order, each step saying what it did:

1. original headers are cut: at most :data:`MAX_KEPT_HEADERS` are kept, a name longer than
   :data:`MAX_HEADER_NAME_BYTES` drops its header, a value longer than :data:`MAX_HEADER_VALUE_BYTES`
   keeps only its first bytes; ``dlq.headers_cut`` lists ``name=original_bytes`` of each one cut or
   dropped (names shown up to 64 characters) and ``dlq.headers_original_bytes`` their total size;
2. the value is emptied: ``dlq.value_dropped_bytes`` says how large it was;
3. the key is dropped: ``dlq.key_dropped_bytes``;
4. every original header is dropped (``dlq.headers_cut`` says ``*=all``).

The original always stays at its source offset. Sizes are Kafka's own estimate of the record
(kafka-python's ``DefaultRecordBatchBuilder.estimate_size_in_bytes``), so the send cannot fail
with ``MessageSizeTooLargeError``.

>>> sink = DeadLetterSink(producer, "linesight.dead-letter")  # doctest: +SKIP
>>> sink.send(record, "not_an_image", "12 bytes that OpenCV cannot decode")  # doctest: +SKIP
>>> sink.flush()  # raises DeliveryError if a dead letter was not written  # doctest: +SKIP
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kafka.record.default_records import DefaultRecordBatchBuilder

from connectors.sinks import ProducerSink

__all__ = [
    "DLQ_HEADERS",
    "MAX_HEADER_NAME_BYTES",
    "MAX_HEADER_VALUE_BYTES",
    "MAX_KEPT_HEADERS",
    "DeadLetterSink",
    "fit_dead_letter",
]

DLQ_HEADERS = (
    "dlq.reason", "dlq.detail", "dlq.source_topic", "dlq.source_partition", "dlq.source_offset", "dlq.failed_at",
)
MAX_KEPT_HEADERS = 64  # original headers kept when a record must be cut (a frame has 5)
MAX_HEADER_NAME_BYTES = 256
MAX_HEADER_VALUE_BYTES = 1024  # a frame header is < 130 bytes; more is hostile or a bug
_MAX_DETAIL_CHARS = 1000
_MAX_LISTED = 32  # cut headers named in dlq.headers_cut; more are counted
_SAFETY_BYTES = 512  # margin under max_request_size for the batch framing of another producer version

Headers = list[tuple[str, bytes]]


def record_size_bytes(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """Kafka's upper-bound estimate of one record in a batch (what the producer checks)."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


def fit_dead_letter(
    key: bytes | None, value: bytes, original: Headers, added: Headers, max_bytes: int
) -> tuple[bytes | None, bytes, Headers]:
    """``(key, value, headers)`` of a dead letter that fits ``max_bytes`` (see the module's steps).

    ``added`` are the ``dlq.*`` headers (small, always kept); notes about cuts are appended to them.

    >>> key, value, headers = fit_dead_letter(b"k", b"v" * 5000, [("h", b"x" * 3000)], [("dlq.reason", b"r")], 2000)
    >>> value, dict(headers)["h"][:3], dict(headers)["dlq.headers_cut"], dict(headers)["dlq.value_dropped_bytes"]
    (b'', b'xxx', b'h=3000', b'5000')
    """
    if record_size_bytes(key, value, original + added) <= max_bytes:
        return key, value, original + added
    kept, cut = _cut_headers(original)
    notes: Headers = []
    if cut:
        listed = ",".join(f"{name}={size}" for name, size in cut[:_MAX_LISTED])
        if len(cut) > _MAX_LISTED:
            listed += f",...+{len(cut) - _MAX_LISTED} more"
        notes += [
            ("dlq.headers_cut", listed.encode("utf-8", "replace")),
            ("dlq.headers_original_bytes", str(_headers_bytes(original)).encode()),
        ]
    for step in ("value", "key", "headers"):
        if record_size_bytes(key, value, kept + added + notes) <= max_bytes:
            break
        if step == "value" and value:
            notes.append(("dlq.value_dropped_bytes", str(len(value)).encode()))
            value = b""
        elif step == "key" and key:
            notes.append(("dlq.key_dropped_bytes", str(len(key)).encode()))
            key = None
        elif step == "headers" and kept:
            notes = [(n, v) for n, v in notes if n != "dlq.headers_cut"]
            notes.append(("dlq.headers_cut", b"*=all"))
            if not any(n == "dlq.headers_original_bytes" for n, _ in notes):
                notes.append(("dlq.headers_original_bytes", str(_headers_bytes(original)).encode()))
            kept = []
    return key, value, kept + added + notes


def _headers_bytes(headers: Headers) -> int:
    return sum(len(name.encode("utf-8", "replace")) + len(value) for name, value in headers)


def _shown(name: str) -> str:
    """A header name as listed in dlq.headers_cut: at most 64 characters, no ',' or '='."""
    shown = name[:64].replace(",", "_").replace("=", "_")
    return shown + ("..." if len(name) > 64 else "")


def _cut_headers(original: Headers) -> tuple[Headers, list[tuple[str, int]]]:
    """(headers kept, possibly shortened; [(shown name, original bytes)] of those cut or dropped)."""
    kept: Headers = []
    cut: list[tuple[str, int]] = []
    for index, (name, value) in enumerate(original):
        name_bytes = len(name.encode("utf-8", "replace"))
        if index >= MAX_KEPT_HEADERS or name_bytes > MAX_HEADER_NAME_BYTES:
            cut.append((_shown(name), name_bytes + len(value)))
            continue
        if len(value) > MAX_HEADER_VALUE_BYTES:
            cut.append((_shown(name), len(value)))
            value = value[:MAX_HEADER_VALUE_BYTES]
        kept.append((name, value))
    return kept, cut


class DeadLetterSink(ProducerSink):
    """Re-publish bad records to ``topic`` with the reason in headers; ``flush()`` before committing offsets."""

    def __init__(self, producer: Any, topic: str, **options: Any) -> None:
        """``options``: ``renew`` and ``flush_timeout_s`` of :class:`~connectors.sinks.ProducerSink`."""
        super().__init__(producer, topic, **options)
        config = getattr(producer, "config", None) or {}
        self._max_record_bytes = int(config.get("max_request_size", 1 << 20)) - _SAFETY_BYTES
        self.reasons: dict[str, int] = {}
        self.cut = 0  # dead letters that had to be cut to fit

    def send(self, record: Any, reason: str, detail: str) -> Any:
        """Queue ``record`` (topic, partition, offset, key, value, headers) for the dead-letter topic; returns
        the producer's future (``succeeded()`` once written)."""
        value = bytes(record.value) if record.value is not None else b""
        original = [
            (str(name), bytes(v) if v is not None else b"")
            for name, v in (record.headers or [])
            if not str(name).startswith("dlq.")
        ]
        added = [
            ("dlq.reason", reason.encode()),
            ("dlq.detail", detail[:_MAX_DETAIL_CHARS].encode("utf-8", "replace")),
            ("dlq.source_topic", str(record.topic).encode()),
            ("dlq.source_partition", str(record.partition).encode()),
            ("dlq.source_offset", str(record.offset).encode()),
            ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        key = bytes(record.key) if record.key is not None else None
        key, value, headers = fit_dead_letter(key, value, original, added, self._max_record_bytes)
        if len(headers) != len(original) + len(added) or headers[: len(original)] != original:
            self.cut += 1
        label = f"dead letter of {record.topic}[{record.partition}]@{record.offset} ({reason})"
        future = self._produce(key=key, value=value, headers=headers, label=label)
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        return future
