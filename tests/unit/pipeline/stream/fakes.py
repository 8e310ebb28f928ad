"""In-memory stand-ins for the ingest loop's ports: a frames source, dead letters, a dispatcher with a
simulated SQL table. They follow the contracts of :mod:`pipeline.stream.ports`; faults are switched on by flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from connectors.exceptions import DeliveryError
from connectors.schema import FrameHeaders, encode_image, frame_message
from pipeline.exceptions import BatchFailed, InfrastructureFault
from pipeline.stream.messages import BankRef, FrameTask, WriteResult

TOPIC = "frames"
BANKS = {"brick": BankRef("brick", 1, "/banks/brick/v1.safetensors")}


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def image_bytes(shade: int = 100) -> bytes:
    return encode_image(np.full((32, 32, 3), shade, np.uint8))


def frame_record(offset: int, frame_id: str | None = None, *, partition: int = 0, shade: int = 100,
                 product_class: str = "brick") -> Record:
    headers = FrameHeaders(frame_id=frame_id or f"f-{partition}-{offset}", line_id="line-1", camera_id="cam-1",
                           product_class=product_class, captured_at=datetime.now(UTC))
    key, value, kafka_headers = frame_message(headers, image_bytes(shade))
    return Record(TOPIC, partition, offset, key, value, kafka_headers)


def bad_record(offset: int, partition: int = 0) -> Record:
    good = frame_record(offset, partition=partition)
    return Record(TOPIC, partition, offset, good.key, b"not an image at all", good.headers)


class Events(list):
    """The order in which the fakes saw flushes and commits."""


class FakeSource:
    """Returns records in order, ``max_records`` at a time; records commits. ``generation`` grows on a
    reconnect (:meth:`reconnect`)."""

    def __init__(self, records: list[Record], events: Events) -> None:
        self.records = list(records)
        self.events = events
        self.cursor = 0
        self.polls = 0
        self.generation = 0
        self.committed: dict[tuple[str, int], int] = {}
        self.commit_fault = False
        self.closed = False

    def add(self, *records: Record) -> None:
        self.records.extend(records)

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        self.polls += 1
        out = self.records[self.cursor : self.cursor + max_records]
        self.cursor += len(out)
        return out

    def commit(self, offsets) -> None:
        if self.commit_fault:
            raise InfrastructureFault("broker", "the broker does not answer")
        self.committed.update(offsets)
        self.events.append(("commit", dict(offsets)))

    def assignment(self) -> set[tuple[str, int]]:
        return {(TOPIC, 0)}

    def close(self) -> None:
        self.closed = True

    def replay_from_committed(self) -> None:
        """What a restarted consumer does: read again from the committed offset (one partition)."""
        self.cursor = self.committed.get((TOPIC, 0), 0)

    def reconnect(self) -> None:
        """What the Kafka source does after the broker was away: a new consumer, from the committed offset."""
        self.generation += 1
        self.replay_from_committed()


class Delivery:
    """The fake producer's future: ``succeeded()`` once the record is written."""

    def __init__(self) -> None:
        self.written = False

    def succeeded(self) -> bool:
        return self.written


class FakeDeadLetters:
    """The dead-letter topic. ``flush_fault``: the flush fails; the first ``deliver_on_fault`` queued records
    are written all the same (confirmed by their handles), the others are lost."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.queued: list[tuple[Any, str, str, Delivery]] = []
        self.written: list[tuple[Any, str, str]] = []
        self.flush_fault = False
        self.deliver_on_fault = 0

    def send(self, record, reason: str, detail: str) -> Delivery:
        delivery = Delivery()
        self.queued.append((record, reason, detail, delivery))
        return delivery

    def flush(self) -> None:
        delivered = self.queued if not self.flush_fault else self.queued[: self.deliver_on_fault]
        for record, reason, detail, delivery in delivered:
            delivery.written = True
            self.written.append((record, reason, detail))
        count, self.queued = len(self.queued), []
        if self.flush_fault:  # the rest is what the producer lost
            raise DeliveryError(f"{count - len(delivered)} record(s) for topic 'dlq' were not delivered")
        self.events.append(("flush", count))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.written]

    def per_offset(self) -> dict[int, int]:
        """How many dead letters each source offset has on the topic."""
        out: dict[int, int] = {}
        for record, _, _ in self.written:
            out[record.offset] = out.get(record.offset, 0) + 1
        return out


class FakeLedger:
    """The dead-letter ledger in SQL: ``down`` makes lookups and writes fail (``fail_writes`` only writes)."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.rows: dict[tuple, tuple[str, str]] = {}
        self.down = False
        self.fail_writes = False

    def recorded(self, keys):
        if self.down:
            raise ConnectionError("connection refused")
        return {key for key in keys if key in self.rows}

    def record(self, entries) -> None:
        if self.down or self.fail_writes:
            raise ConnectionError("connection refused")
        for key, reason, detail in entries:
            self.rows.setdefault(key, (reason, detail))
        self.events.append(("record", len(entries)))


@dataclass(eq=False)
class Handle:
    tasks: list[FrameTask]
    slot: int
    done: bool = False
    outcome: Any = None


@dataclass
class FakeDispatcher:
    """Scores by a rule, 'stores' in ``stored`` (frame_id -> sha256) like the sink's upsert.

    ``auto``: handles finish when submitted; else the test calls :meth:`finish`.
    Faults: ``database_down``; ``dead_slots`` (actor death); ``poison`` frame ids (raise on a live actor).
    """

    slots: int = 2
    auto: bool = True
    database_down: bool = False
    dead_slots: set[int] = field(default_factory=set)
    poison: set[str] = field(default_factory=set)
    busy: bool = False
    stored: dict[str, str] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    submitted: list[Handle] = field(default_factory=list)
    _next: int = 0

    def submit(self, tasks, avoid=frozenset()):
        live = [s for s in range(self.slots) if s not in self.dead_slots]
        if not live:  # like the Ray dispatcher: actors it saw die are not used until replaced
            raise InfrastructureFault("no_actor", "every inference actor is down")
        choices = [s for s in live if s not in avoid] or live
        slot = choices[self._next % len(choices)]
        self._next += 1
        handle = Handle(list(tasks), slot)
        self.submitted.append(handle)
        if self.auto:
            self.finish(handle)
        return handle

    def finish(self, handle: Handle) -> None:
        handle.done = True
        handle.outcome = self._run(handle)

    def _run(self, handle: Handle) -> Any:
        if handle.slot in self.dead_slots:
            return InfrastructureFault("inference_actor", f"actor {handle.slot} died", actor_slot=handle.slot)
        bad = [t.frame_id for t in handle.tasks if t.frame_id in self.poison]
        if bad:
            return BatchFailed(f"ValueError: cannot score {bad[0]}", actor_slot=handle.slot)
        if self.database_down:
            return InfrastructureFault("database", "OperationalError: connection refused")
        result = WriteResult()
        for index, task in enumerate(handle.tasks):
            known = self.stored.get(task.frame_id)
            if known is None:
                self.stored[task.frame_id] = task.content_sha256
                result.stored += 1
                if task.image_bytes == image_bytes(200):  # shade 200 frames are "defective"
                    self.alerts.append(task.frame_id)
                    result.alerts_sent += 1
            else:
                result.redelivered += 1
                if known != task.content_sha256:
                    result.conflicts.append(index)
        return result

    def wait(self, handles, timeout_s):
        return [h for h in handles if h.done]

    def result(self, handle: Handle) -> WriteResult:
        if isinstance(handle.outcome, Exception):
            raise handle.outcome
        return handle.outcome

    def slot(self, handle: Handle) -> int:
        return handle.slot

    def idle(self) -> bool:
        return not self.busy


class FakeClock:
    """Advances ``tick_s`` on every read, so deadlines pass without sleeping."""

    def __init__(self, tick_s: float = 0.01) -> None:
        self.now = 0.0
        self.tick_s = tick_s

    def __call__(self) -> float:
        self.now += self.tick_s
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
