"""Reading the dead-letter topic for people: the newest dead letters, and replaying one to the frames topic.

A bounded, group-less consumer (``assign`` + ``seek``, no commits, no group join): for each
partition it reads from ``end - limit`` past the end offset it saw when it started, until a poll
comes back empty or ``timeout_s`` is up. Nothing is stored in SQL; the topic is the record (see :mod:`connectors.dead_letter`).

Replay re-publishes a dead letter's original key, value and headers (the ``dlq.*`` headers
removed, ``linesight.replayed_from`` added) to the frames topic, for frames dead-lettered by
mistake (e.g. ``unknown_class`` before the class's bank was built). The stream upserts on
``frame_id``, so replaying a frame that was stored since stores nothing twice.

>>> letters = read_dead_letters("127.0.0.1:9092", "linesight.dead-letter", limit=50)  # doctest: +SKIP
>>> replay_dead_letter("127.0.0.1:9092", "linesight.dead-letter", 0, 12, "linesight.frames",
...                    max_request_size=1_048_576)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from connectors.exceptions import ConnectorError
from linesight.errors import ConflictError, NotFoundError

__all__ = [
    "DeadLetter", "DeadLetterNotFound", "NotReplayableError", "read_dead_letters", "replay_dead_letter", "REPLAY_HEADER",
]

REPLAY_HEADER = "linesight.replayed_from"
MAX_LIMIT = 1000
_POLL_MS = 200
_FETCH_POLL_MS = 1000  # one record asked for: an empty poll this long means there is none
_KEEP_FACTOR = 4  # letters kept while reading, per letter asked for


class DeadLetterNotFound(ConnectorError, NotFoundError):  # noqa: N818 - reads as "no such dead letter"
    """No record at the asked dead-letter partition/offset (the API answers 404)."""


class NotReplayableError(ConnectorError, ConflictError):
    """The dead letter holds no frame to replay: its value was dropped (oversize) or is empty (409)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as shown to an operator; ``partition``/``offset`` address it in the dead-letter topic."""

    partition: int
    offset: int
    reason: str
    detail: str
    failed_at: str | None  # ISO 8601 UTC, as the sink wrote it
    line_id: str | None  # the frame's line_id header, else its key
    frame_id: str | None
    camera_id: str | None
    product_class: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    value_bytes: int
    value_dropped_bytes: int | None  # an oversize frame's value is not in the dead letter
    replayable: bool


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return bytes(value).decode("utf-8", "replace")


def _int(value: Any) -> int | None:
    text = _text(value)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _dead_letter(record: Any) -> DeadLetter:
    headers = {name: value for name, value in (record.headers or [])}
    dropped = _int(headers.get("dlq.value_dropped_bytes"))
    value = record.value or b""
    return DeadLetter(
        partition=record.partition, offset=record.offset,
        reason=_text(headers.get("dlq.reason")) or "unknown",
        detail=_text(headers.get("dlq.detail")) or "",
        failed_at=_text(headers.get("dlq.failed_at")),
        line_id=_text(headers.get("line_id")) or _text(record.key),
        frame_id=_text(headers.get("frame_id")), camera_id=_text(headers.get("camera_id")),
        product_class=_text(headers.get("product_class")),
        source_topic=_text(headers.get("dlq.source_topic")),
        source_partition=_int(headers.get("dlq.source_partition")),
        source_offset=_int(headers.get("dlq.source_offset")),
        value_bytes=len(value), value_dropped_bytes=dropped, replayable=dropped is None and len(value) > 0,
    )


def _consumer(bootstrap_servers: str, timeout_s: float, security: dict[str, Any] | None = None) -> Any:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    timeout_ms = max(1000, int(timeout_s * 1000))
    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
            request_timeout_ms=max(timeout_ms, 5000), bootstrap_timeout_ms=timeout_ms, **(security or {}),
        )
    except (KafkaError, ValueError, OSError) as exc:
        raise ConnectorError(f"cannot read from Kafka at {bootstrap_servers!r}: {exc}") from None


def _partitions(consumer: Any, topic: str) -> list[Any]:
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(partitions or ())]


def read_dead_letters(
    bootstrap_servers: str, topic: str, *, limit: int = 200, timeout_s: float = 5.0,
    reason: str | None = None, line_id: str | None = None, security: dict[str, Any] | None = None,
) -> list[DeadLetter]:
    """The newest ``limit`` dead letters (by failure time, then offset), newest first; ``[]`` when the
    topic does not exist yet. ``reason``/``line_id`` filter the letters read (the last ``limit`` per
    partition)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ConnectorError(f"limit must be in 1..{MAX_LIMIT}, got {limit}")
    consumer = _consumer(bootstrap_servers, timeout_s, security)
    try:
        partitions = _partitions(consumer, topic)
        if not partitions:
            return []
        consumer.assign(partitions)
        begin = consumer.beginning_offsets(partitions)
        end = consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if end[tp] > begin[tp]}
        for tp in pending:
            consumer.seek(tp, max(begin[tp], end[tp] - limit))
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + timeout_s
        # Read to the end offsets seen at the start, then on until a poll comes back empty: Tansu
        # under-reports end offsets after batched produces (measured facts in docs/architecture.md), so they are a floor only.
        while pending and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=_POLL_MS)
            for records in batches.values():
                letters += [_dead_letter(r) for r in records]
            del letters[: max(0, len(letters) - _KEEP_FACTOR * limit)]  # bounded memory on a busy topic
            if not batches:
                pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
    except ConnectorError:
        raise
    except Exception as exc:  # kafka-python raises many types for an unreachable or odd broker
        raise ConnectorError(f"cannot read dead letters from {topic!r} at {bootstrap_servers!r}: {exc}") from None
    finally:
        consumer.close()
    if reason is not None:
        letters = [d for d in letters if d.reason == reason]
    if line_id is not None:
        letters = [d for d in letters if d.line_id == line_id]
    letters.sort(key=lambda d: (d.failed_at or "", d.offset), reverse=True)
    return letters[:limit]


def _fetch(bootstrap_servers: str, topic: str, partition: int, offset: int, timeout_s: float,
           security: dict[str, Any] | None = None) -> Any:
    from kafka import TopicPartition

    consumer = _consumer(bootstrap_servers, timeout_s, security)
    try:
        tp = TopicPartition(topic, partition)
        if tp not in _partitions(consumer, topic):
            raise DeadLetterNotFound(f"dead-letter topic {topic!r} has no partition {partition}")
        consumer.assign([tp])
        begin = consumer.beginning_offsets([tp])[tp]
        missing = DeadLetterNotFound(f"no dead letter at {topic}[{partition}]@{offset} (the first is @{begin})")
        if offset < begin:
            raise missing
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=_FETCH_POLL_MS).get(tp, [])
            if not records:  # past the end (end offsets are not trusted on Tansu)
                raise missing
            for record in records:
                if record.offset == offset:
                    return record
                if record.offset > offset:
                    raise missing
        raise ConnectorError(f"timed out after {timeout_s:g} s reading {topic}[{partition}]@{offset}")
    finally:
        consumer.close()


def replay_dead_letter(
    bootstrap_servers: str, dead_letter_topic: str, partition: int, offset: int, frames_topic: str, *,
    max_request_size: int, timeout_s: float = 5.0, security: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Re-publish the dead letter at ``partition``/``offset`` to ``frames_topic``; returns where it went.

    :class:`DeadLetterNotFound` for no such record; :class:`NotReplayableError` for a letter whose value
    was dropped (oversize) or is empty.
    """
    from connectors.kafka import make_producer

    record = _fetch(bootstrap_servers, dead_letter_topic, partition, offset, timeout_s, security)
    letter = _dead_letter(record)
    if not letter.replayable:
        why = (f"its {letter.value_dropped_bytes}-byte value was dropped (oversize); the original is at "
               f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
               if letter.value_dropped_bytes is not None else "it has an empty value")
        raise NotReplayableError(f"dead letter {dead_letter_topic}[{partition}]@{offset} cannot be replayed: {why}")
    headers = [(name, bytes(value) if value is not None else b"") for name, value in (record.headers or [])
               if not name.startswith("dlq.") and name != REPLAY_HEADER]
    headers.append((REPLAY_HEADER, f"{dead_letter_topic}[{partition}]@{offset}".encode()))
    producer = make_producer(bootstrap_servers, max_request_size=max_request_size, linger_ms=0, security=security)
    try:
        sent = producer.send(frames_topic, key=record.key, value=record.value, headers=headers).get(timeout=timeout_s)
    except Exception as exc:
        raise ConnectorError(f"cannot replay {dead_letter_topic}[{partition}]@{offset} to {frames_topic!r}: {exc}") from None
    finally:
        producer.close(timeout=timeout_s)
    return {"dead_letter": letter, "topic": sent.topic, "partition": sent.partition, "offset": sent.offset}
