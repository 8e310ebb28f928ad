"""The ingest loop: Kafka → validate → batch → inference → sink → commit (at-least-once).

One :class:`Ingestor` owns one Kafka consumer of the frames topic. It

1. polls up to ``max_batch_size`` records, waiting at most ``batch_wait_timeout_s`` to fill a batch;
2. parses each record; bad frames go to the dead-letter topic with the reason;
3. sends the good frames to an inference actor and chains the result into the sink actor
   (``sink.write.remote(inference.score.remote(batch))``: no round trip through this loop);
4. keeps at most ``max_inflight_batches`` batches in flight (backpressure: it stops polling);
5. commits a batch's offsets only when it and every batch before it were written to SQL and the
   dead letters were flushed. A crash before the commit replays the batch; the sink's idempotent
   upsert keyed by ``frame_id`` stores nothing twice.

Bank versions are re-read from SQL every ``bank_poll_interval_s``; every task carries the version
that will score it, so a hot swap takes effect at the next batch and loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from linesight.settings import Settings
from pipeline.messages import ZERO_SHOT_VERSION, BankRef, FrameTask, WriteResult

__all__ = ["Ingestor", "IngestStats"]

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """Counters of one ingest loop (read by ``stats()`` from another thread)."""

    polled: int = 0
    assigned_partitions: int = 0  # 0 until the consumer group join completes
    batches: int = 0
    stored: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    alerts_sent: int = 0
    committed_batches: int = 0
    commit_failures: int = 0
    inference_errors: int = 0
    bank_swaps: int = 0
    bank_versions: dict[str, int] = field(default_factory=dict)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=20_000))

    def as_dict(self) -> dict[str, Any]:
        """A picklable snapshot."""
        out = {k: v for k, v in self.__dict__.items() if k != "latencies_ms"}
        out["bank_versions"] = dict(self.bank_versions)
        out["dead_letter_reasons"] = dict(self.dead_letter_reasons)
        out["latencies_ms"] = list(self.latencies_ms)
        return out


@dataclass
class _InFlight:
    offsets: dict[Any, int]  # TopicPartition -> next offset to read once this batch is done
    ref: Any | None  # ObjectRef[WriteResult] of the sink write, None when the batch had no good frame
    tasks: list[FrameTask]
    dead_letters: int


class Ingestor:
    """One consumer's loop; :meth:`run` blocks until :meth:`stop` (then drains and commits)."""

    def __init__(
        self,
        settings: Settings,
        bootstrap_servers: str,
        inference: list[Any],
        sink: Any,
        name: str,
        monitor: Any | None = None,
    ) -> None:
        if not inference:
            raise ValueError("Ingestor needs at least one inference actor")
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.inference = inference
        self.sink = sink
        self.name = name
        self.stats = IngestStats()
        self._stop = threading.Event()
        self._banks: dict[str, BankRef] = {}
        self._banks_read_at = 0.0
        self._next_actor = 0
        self._pending: deque[_InFlight] = deque()
        self._ready_offsets: dict[Any, int] = {}
        self.monitor = monitor
        self._unreported_latencies: list[float] = []
        self._reported_at = 0.0

    # --- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop polling, drain what is in flight, commit and close."""
        self._stop.set()

    def run(self) -> None:
        """Poll, dispatch and commit until :meth:`stop`; then drain in-flight batches."""
        from connectors.dead_letter import DeadLetterSink
        from connectors.kafka import make_producer
        from connectors.source import KafkaFrameSource
        from storage.db import Database
        from storage.repository import Repository

        settings = self.settings
        self._repository = Repository(Database(settings.database_url))
        self._source = KafkaFrameSource(
            self.bootstrap_servers,
            settings.frames_topic,
            settings.consumer_group,
            client_id=self.name,
            max_poll_records=settings.max_batch_size,
            session_timeout_ms=settings.session_timeout_ms,
            security=settings.kafka_security,
        )
        producer = make_producer(
            self.bootstrap_servers, max_request_size=settings.max_frame_bytes * 2, security=settings.kafka_security
        )
        self._dead_letters = DeadLetterSink(producer, settings.dead_letter_topic)
        log.info("%s: consuming %s as group %s", self.name, settings.frames_topic, settings.consumer_group)
        try:
            while not self._stop.is_set():
                self._refresh_banks()
                self._complete_ready(block=len(self._pending) >= settings.max_inflight_batches)
                if len(self._pending) >= settings.max_inflight_batches:
                    continue  # backpressure: don't poll more until a batch finishes
                records = self._collect_batch()
                if records:
                    self._dispatch(records)
                self._report()
            log.info("%s: stopping, draining %d in-flight batches", self.name, len(self._pending))
            while self._pending:
                self._complete_ready(block=True)
        finally:
            self._report(force=True, running=False)
            try:
                self._dead_letters.flush()
            finally:
                self._source.close()
                producer.close()
            log.info("%s: stopped (%s)", self.name, {k: v for k, v in self.stats.as_dict().items() if k != "latencies_ms"})

    # --- steps -------------------------------------------------------------------------------
    def _refresh_banks(self) -> None:
        now = time.monotonic()
        if self._banks and now - self._banks_read_at < self.settings.bank_poll_interval_s:
            return
        active = self._repository.active_banks()
        banks = {cls: BankRef(cls, row.version, row.path) for cls, row in active.items()}
        for cls in self.settings.zero_shot_class_names:  # no bank yet: the trained decoder alone
            banks.setdefault(cls, BankRef(cls, ZERO_SHOT_VERSION, ""))
        for cls, ref in banks.items():
            old = self._banks.get(cls)
            if old is not None and old.version != ref.version:
                self.stats.bank_swaps += 1
                log.info("%s: hot swap %s -> %s", self.name, old.key, ref.key)
        self._banks = banks
        self._banks_read_at = now

    def _collect_batch(self) -> list[Any]:
        """Up to ``max_batch_size`` records, waiting at most ``batch_wait_timeout_s`` after the first."""
        size = self.settings.max_batch_size
        records = self._source.poll(timeout_ms=100, max_records=size)
        self.stats.assigned_partitions = len(self._source.assignment())
        if not records:
            return []
        deadline = time.monotonic() + self.settings.batch_wait_timeout_s
        while len(records) < size and not self._stop.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            records.extend(self._source.poll(timeout_ms=left_ms, max_records=size - len(records)))
        return records

    def _dispatch(self, records: list[Any]) -> None:
        from connectors.schema import BadFrame, parse_record

        received_at = datetime.now(UTC)
        offsets: dict[Any, int] = {}
        tasks: list[FrameTask] = []
        dead = 0
        for record in records:
            tp = _topic_partition(record)
            offsets[tp] = max(offsets.get(tp, -1), record.offset + 1)
            parsed = parse_record(
                record, max_frame_bytes=self.settings.max_frame_bytes, known_classes=set(self._banks)
            )
            if isinstance(parsed, BadFrame):
                self._dead_letter(record, parsed.reason, parsed.detail)
                dead += 1
                continue
            headers = parsed.headers
            tasks.append(
                FrameTask(
                    frame_id=headers.frame_id,
                    line_id=headers.line_id,
                    camera_id=headers.camera_id,
                    product_class=headers.product_class,
                    captured_at=headers.captured_at,
                    received_at=received_at,
                    image=parsed.image,
                    image_bytes=bytes(record.value),
                    bank=self._banks[headers.product_class],
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
            )
        self.stats.polled += len(records)
        ref = None
        if tasks:
            actor = self.inference[self._next_actor % len(self.inference)]
            self._next_actor += 1
            ref = self.sink.write.remote(actor.score.remote(tasks))
        self._pending.append(_InFlight(offsets, ref, tasks, dead))
        self.stats.batches += 1

    def _report(self, force: bool = False, running: bool = True) -> None:
        """Push counters to the stream monitor about once a second (fire and forget)."""
        if self.monitor is None or (not force and time.monotonic() - self._reported_at < 1.0):
            return
        counters = self.stats.as_dict()
        counters.pop("latencies_ms")
        self.monitor.report.remote(self.name, counters, self._unreported_latencies, running)
        self._unreported_latencies = []
        self._reported_at = time.monotonic()

    def _dead_letter(self, record: Any, reason: str, detail: str) -> None:
        self._dead_letters.send(record, reason, detail)
        self.stats.dead_lettered += 1
        self.stats.dead_letter_reasons[reason] = self.stats.dead_letter_reasons.get(reason, 0) + 1
        log.warning("%s: dead-lettered %s[%d]@%d: %s (%s)", self.name, record.topic, record.partition,
                    record.offset, reason, detail)

    def _complete_ready(self, block: bool) -> None:
        """Collect finished batches in order; commit the offsets of the finished prefix."""
        import ray

        done_any = False
        while self._pending:
            head = self._pending[0]
            if head.ref is not None:
                ready, _ = ray.wait([head.ref], timeout=1.0 if block else 0)
                if not ready:
                    if block and not done_any:
                        continue  # keep waiting for the oldest batch
                    break
                self._settle(head)
            self._pending.popleft()
            for tp, offset in head.offsets.items():
                self._ready_offsets[tp] = max(self._ready_offsets.get(tp, -1), offset)
            done_any = True
            block = False
        if done_any:
            self._commit()

    def _settle(self, batch: _InFlight) -> None:
        """Account for a finished batch; a failed batch is re-scored frame by frame."""
        import ray

        try:
            result: WriteResult = ray.get(batch.ref)
        except ray.exceptions.RayTaskError as exc:
            log.error("%s: batch of %d failed (%s); re-scoring frame by frame", self.name, len(batch.tasks), exc)
            result = self._rescore_one_by_one(batch.tasks)
        self.stats.stored += result.stored
        self.stats.redelivered += result.redelivered
        self.stats.alerts_sent += result.alerts_sent
        self.stats.latencies_ms.extend(result.latencies_ms)
        self._unreported_latencies.extend(result.latencies_ms)
        for key, count in result.bank_versions.items():
            self.stats.bank_versions[key] = self.stats.bank_versions.get(key, 0) + count

    def _rescore_one_by_one(self, tasks: list[FrameTask]) -> WriteResult:
        """Isolate the frame that broke a batch: it goes to the dead-letter topic, the others are stored."""
        import ray

        total = WriteResult()
        for task in tasks:
            try:
                result = ray.get(self.sink.write.remote(self.inference[0].score.remote([task])))
            except ray.exceptions.RayTaskError as exc:
                self.stats.inference_errors += 1
                self._dead_letter(_RecordView.of(task), "inference_error", str(exc.cause if hasattr(exc, "cause") else exc)[:500])
                continue
            total.stored += result.stored
            total.redelivered += result.redelivered
            total.alerts_sent += result.alerts_sent
            total.latencies_ms.extend(result.latencies_ms)
            for key, count in result.bank_versions.items():
                total.bank_versions[key] = total.bank_versions.get(key, 0) + count
        return total

    def _commit(self) -> None:
        from kafka.errors import KafkaError

        if not self._ready_offsets:
            return
        self._dead_letters.flush()  # dead letters are durable before their offsets are committed
        try:
            self._source.commit(dict(self._ready_offsets))
            self.stats.committed_batches += 1
        except KafkaError as exc:  # e.g. a rebalance moved the partition: the new owner replays, idempotently
            self.stats.commit_failures += 1
            log.warning("%s: commit failed (%s); the frames will be replayed and deduplicated", self.name, exc)
        self._ready_offsets.clear()


@dataclass(frozen=True)
class _RecordView:
    """The fields of a Kafka record the dead-letter sink needs, rebuilt from a task."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, task: FrameTask) -> _RecordView:
        headers = [
            ("frame_id", task.frame_id.encode()),
            ("line_id", task.line_id.encode()),
            ("camera_id", task.camera_id.encode()),
            ("product_class", task.product_class.encode()),
            ("captured_at", task.captured_at.isoformat().encode()),
        ]
        return cls(task.topic, task.partition, task.offset, task.line_id.encode(), task.image_bytes, headers)


def _topic_partition(record: Any) -> Any:
    from kafka import TopicPartition

    return TopicPartition(record.topic, record.partition)
