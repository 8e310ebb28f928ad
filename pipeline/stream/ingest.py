"""The ingest loop: poll → validate → batch → dispatch → commit a finished prefix (at-least-once).

:class:`IngestLoop` is given its source, dead-letter sink, bank lookup and dispatcher
(:mod:`pipeline.stream.ports`); it imports neither Kafka nor Ray, so its rules are unit-tested on fakes:

1. **Commit only a finished prefix.** Offsets of a batch are committed only when it and every
   batch polled before it are finished (stored, or their frames dead-lettered for their own fault).
2. **Dead letters before the commit, each once.** A finished batch's dead letters are checked against
   the dead-letter ledger (SQL), those not in it sent and flushed, then recorded, and only then are its
   offsets committed (:mod:`pipeline.stream.dead_letter_outbox`): a replayed record that was dead-lettered
   already is not sent again; a failed flush holds the commit and re-sends only unconfirmed dead letters.
3. **Two kinds of failure.** A frame's own fault (decode, headers, unknown class, size, a
   ``frame_id`` reused with other bytes, a frame that fails alone on live actors) goes to the
   dead-letter topic. Anything else (:class:`~pipeline.exceptions.InfrastructureFault`: database,
   broker, actor death, a bank that cannot load, the dead-letter topic or ledger) is retried with backoff
   while polling stops, is never committed past and never dead-letters a frame; the loop resumes by
   itself when the fault clears and reports it (``faults_active`` in :meth:`state`).
4. **A failed batch is retried on another live actor before any frame is blamed**, then its
   frames are tried alone; only a frame that fails alone is a poison frame (``inference_error``).
5. **Adaptive batching.** When an inference actor is idle, what has arrived is dispatched at once
   (up to ``max_batch_size``). While all are busy the loop keeps filling the batch until it is full,
   an actor finishes, or ``batch_wait_timeout_s`` passes: frames wait in the loop, not in an actor's
   queue behind other batches, so the batch size follows the load (few frames when the line is
   quiet, full batches near capacity) and a frame waits at most about one batch's scoring time.
6. **A reconnected source commits only what it read.** When the source replaced its consumer after
   the broker was away (``source.generation`` grew), offsets of batches read before are not committed:
   those frames replay and are deduplicated (a restarted memory-only broker has none of them).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.exceptions import BatchFailed, CommitRefused, InfrastructureFault
from pipeline.stream.counters import StreamCounters
from pipeline.stream.dead_letter_outbox import DeadLetter, DeadLetterOutbox
from pipeline.stream.messages import BankRef, FrameTask, RecordView, WriteResult, record_digest
from pipeline.stream.ports import (
    BankLookup,
    DeadLetterLedger,
    DeadLetters,
    Dispatcher,
    FrameSource,
    IngestConfig,
    Reporter,
)

__all__ = ["IngestLoop"]

log = logging.getLogger(__name__)

_CLEARED_BY_A_WRITE = ("database", "inference_actor", "sink_actor", "sink", "bank", "no_actor")


@dataclass
class _Unit:
    """Frames sent together: a whole batch, or one frame being tried alone."""

    tasks: list[FrameTask]
    handle: Any | None = None
    retry_at: float = 0.0
    attempts: int = 0
    deaths: int = 0  # attempts that ended with the inference actor dying
    failures: int = 0  # attempts that raised on a live actor
    waiting_on_fault: bool = False  # an attempt hit an infrastructure fault and none succeeded since
    avoid: set[int] = field(default_factory=set)


@dataclass
class _Batch:
    offsets: dict[tuple[str, int], int]  # (topic, partition) -> next offset once this batch is done
    generation: int = 0  # the source's generation when it was read (a reconnect makes it stale)
    dead: list[DeadLetter] = field(default_factory=list)
    units: list[_Unit] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.units


class IngestLoop:
    """One consumer's loop; :meth:`run` blocks until :meth:`stop` (then drains and commits)."""

    def __init__(
        self,
        config: IngestConfig,
        source: FrameSource,
        dead_letters: DeadLetters,
        bank_lookup: BankLookup,
        dispatcher: Dispatcher,
        *,
        name: str = "ingest",
        report: Reporter | None = None,
        clock: Callable[[], float] = time.monotonic,
        ledger: DeadLetterLedger | None = None,
    ) -> None:
        """``ledger``: the dead-letter ledger (None: no check, a replay may dead-letter a record again)."""
        self.config = config
        self.source = source
        self.dead_letters = dead_letters
        self.bank_lookup = bank_lookup
        self.dispatcher = dispatcher
        self.name = name
        self.counters = StreamCounters()
        self.outbox = DeadLetterOutbox(dead_letters, ledger, self.counters, name)
        self.latencies_ms: deque[float] = deque(maxlen=20_000)
        self.faults_active: dict[str, str] = {}  # kind -> last detail, while it lasts
        self._report_fn = report
        self._clock = clock
        self._stop = threading.Event()
        self._banks: dict[str, BankRef] | None = None
        self._banks_read_at = 0.0
        self._bank_failures = 0
        self._pending: deque[_Batch] = deque()
        self._finished: list[_Batch] = []  # done, offsets not committed yet
        self._commit_retry_at = 0.0
        self._commit_failures_in_a_row = 0
        self._unreported_latencies: list[float] = []
        self._reported_at = -1e18

    # --- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop polling, drain what is in flight, commit and return from :meth:`run`."""
        self._stop.set()

    def run(self) -> None:
        """Step until :meth:`stop`; then drain (bounded by ``drain_timeout_s``) and close the source."""
        log.info("%s: consuming", self.name)
        try:
            while not self._stop.is_set():
                self.step()
            deadline = self._clock() + self.config.drain_timeout_s
            log.info("%s: stopping, draining %d batches", self.name, len(self._pending))
            while (self._pending or self._finished) and self._clock() < deadline and "broker" not in self.faults_active:
                self.step(poll=False)
            if self._pending or self._finished:
                why = "the broker is away" if "broker" in self.faults_active else "drain timeout"
                log.warning("%s: gave up draining (%s); %d uncommitted batches will be replayed", self.name, why,
                            len(self._pending) + len(self._finished))
        finally:
            self._report(force=True, running=False)
            self.source.close()
            log.info("%s: stopped (%s)", self.name, self.counters.as_dict())

    def step(self, poll: bool = True) -> None:
        """One turn: refresh banks, settle finished work, commit the finished prefix, maybe poll."""
        self._refresh_banks()
        self._advance(block=self._must_wait())
        self._commit()
        if poll and not self._holding() and len(self._pending) < self.config.max_inflight_batches:
            records, fault = self._collect_batch()
            generation = getattr(self.source, "generation", 0)  # one consumer read them all (it reconnects first)
            if fault is not None:  # the broker does not answer: wait, then poll again
                self._fault(fault.kind, fault.detail)
                self._stop.wait(self.config.retry_initial_s)
            elif self._commit_retry_at == 0:
                self._clear("broker")
            if records:
                self._advance(block=False)  # settle what finished while filling: the free actor gets the batch
                self._dispatch(records, generation)
        elif not poll or self._holding():
            self._idle_wait()
        self._report()

    def state(self) -> dict[str, Any]:
        """Counters, latencies and the fault state (picklable)."""
        out = self.counters.as_dict()
        out["latencies_ms"] = list(self.latencies_ms)
        out["faults_active"] = dict(self.faults_active)
        out["holding"] = self._holding()
        return out

    # --- faults -------------------------------------------------------------------------------
    def _fault(self, kind: str, detail: str) -> None:
        self.counters.count_fault(kind)
        if kind not in self.faults_active:
            log.error("%s: infrastructure fault (%s): %s; retrying, not polling, not committing", self.name,
                      kind, detail)
        self.faults_active[kind] = detail[:300]

    def _clear(self, *kinds: str) -> None:
        for kind in kinds:
            if self.faults_active.pop(kind, None) is not None:
                log.info("%s: %s recovered; resuming", self.name, kind)

    def _holding(self) -> bool:
        """Back-pressure for a fault: no bank list yet, a unit waiting to retry, or a commit waiting."""
        if self._banks is None or self._commit_retry_at > 0:
            return True
        return any(unit.waiting_on_fault for batch in self._pending for unit in batch.units)

    def _must_wait(self) -> bool:
        return len(self._pending) >= self.config.max_inflight_batches or self._holding()

    def _idle_wait(self) -> None:
        """Nothing to poll: wait a little for running work instead of spinning."""
        handles = self._running_handles()
        if handles:
            self.dispatcher.wait(handles, 0.05)
        else:
            self._stop.wait(0.02)

    # --- banks --------------------------------------------------------------------------------
    def _refresh_banks(self) -> None:
        now = self._clock()
        if self._bank_failures:  # SQL was down: retry with backoff
            due = self._banks_read_at + self.config.backoff_s(self._bank_failures)
        elif self._banks is None:
            due = now
        else:
            due = self._banks_read_at + self.config.bank_poll_interval_s
        if now < due:
            return
        self._banks_read_at = now
        try:
            banks = self.bank_lookup()
        except Exception as exc:  # SQL down: keep the last known banks, retry with backoff
            self._bank_failures += 1
            self._fault("bank_lookup", f"{type(exc).__name__}: {exc}")
            return
        self._bank_failures = 0
        self._clear("bank_lookup")
        for cls, ref in banks.items():
            old = (self._banks or {}).get(cls)
            if old is not None and old.version != ref.version:
                self.counters.bank_swaps += 1
                log.info("%s: hot swap %s -> %s", self.name, old.key, ref.key)
        self._banks = banks

    # --- polling and dispatch ------------------------------------------------------------------
    def _collect_batch(self) -> tuple[list[Any], InfrastructureFault | None]:
        """Up to ``max_batch_size`` records; waits up to ``batch_wait_timeout_s`` to fill only while actors are
        busy. A fault while filling keeps the records already read (they are dispatched)."""
        size = self.config.max_batch_size
        try:
            records = list(self.source.poll(timeout_ms=100, max_records=size))
            self.counters.assigned_partitions = len(self.source.assignment())
        except InfrastructureFault as exc:
            return [], exc
        finally:
            self.counters.source_reconnects = getattr(self.source, "reconnects", 0)
        if not records:
            return [], None
        deadline = self._clock() + self.config.batch_wait_timeout_s
        running = self._running_handles()
        while len(records) < size and not self._stop.is_set() and not self.dispatcher.idle():
            if running and self.dispatcher.wait(running, 0.0):
                break  # an actor is about to be free: what has arrived goes to it now, as one batch
            left_ms = int((deadline - self._clock()) * 1000)
            if left_ms <= 0:
                break
            try:
                records.extend(self.source.poll(timeout_ms=min(left_ms, 10), max_records=size - len(records)))
            except InfrastructureFault as exc:
                return records, exc
        return records, None

    def _dispatch(self, records: list[Any], generation: int = 0) -> None:
        from connectors.schema import BadFrame, parse_record

        assert self._banks is not None
        received_at = datetime.now(UTC)
        batch = _Batch(offsets={}, generation=generation)
        tasks: list[FrameTask] = []
        for record in records:
            tp = (record.topic, record.partition)
            batch.offsets[tp] = max(batch.offsets.get(tp, -1), record.offset + 1)
            value = bytes(record.value) if record.value is not None else b""
            value_sha256 = hashlib.sha256(value).hexdigest()
            digest = record_digest(record.key, value_sha256, record.headers)
            parsed = parse_record(record, max_frame_bytes=self.config.max_frame_bytes, known_classes=set(self._banks),
                                  **self.config.parse_options)
            if isinstance(parsed, BadFrame):
                self._dead_letter(batch, record, parsed.reason, parsed.detail, digest)
                continue
            headers = parsed.headers
            tasks.append(FrameTask(
                frame_id=headers.frame_id, line_id=headers.line_id, camera_id=headers.camera_id,
                product_class=headers.product_class, captured_at=headers.captured_at, received_at=received_at,
                image=parsed.image, image_bytes=value, bank=self._banks[headers.product_class],
                topic=record.topic, partition=record.partition, offset=record.offset,
                content_sha256=value_sha256, record_sha256=digest,
            ))
        self.counters.polled += len(records)
        self.counters.batches += 1
        if tasks:
            unit = _Unit(tasks)
            batch.units.append(unit)
            self._submit(unit)
        self._pending.append(batch)

    def _submit(self, unit: _Unit) -> None:
        unit.attempts += 1
        try:
            unit.handle = self.dispatcher.submit(unit.tasks, frozenset(unit.avoid))
        except InfrastructureFault as exc:
            self._fault(exc.kind, exc.detail)
            self._retry_later(unit)

    def _retry_later(self, unit: _Unit) -> None:
        unit.handle = None
        unit.waiting_on_fault = True
        unit.retry_at = self._clock() + self.config.backoff_s(unit.attempts)

    def _dead_letter(self, batch: _Batch, record: Any, reason: str, detail: str, digest: str) -> None:
        """Judge ``record`` bad; it is written (once) when its batch is committed (:meth:`_commit`)."""
        key = (record.topic, record.partition, record.offset, digest)
        batch.dead.append(DeadLetter(record, reason, detail, key))
        log.warning("%s: dead-lettered %s[%d]@%d: %s (%s)", self.name, record.topic, record.partition,
                    record.offset, reason, detail)

    # --- completion ----------------------------------------------------------------------------
    def _running_handles(self) -> list[Any]:
        return [u.handle for b in self._pending for u in b.units if u.handle is not None]

    def _advance(self, block: bool) -> None:
        """Settle finished units, resubmit units whose retry time came, move finished batches on."""
        handles = self._running_handles()
        if handles:
            finished = set(map(id, self.dispatcher.wait(handles, 0.2 if block else 0.0)))
            for batch in list(self._pending):
                for unit in list(batch.units):
                    if unit.handle is not None and id(unit.handle) in finished:
                        self._settle(batch, unit)
        now = self._clock()
        for batch in self._pending:
            for unit in batch.units:
                if unit.handle is None and unit.retry_at <= now:
                    self.counters.batch_retries += 1
                    self._submit(unit)
        while self._pending and self._pending[0].done:
            self._finished.append(self._pending.popleft())

    def _settle(self, batch: _Batch, unit: _Unit) -> None:
        handle, unit.handle = unit.handle, None
        slot = self.dispatcher.slot(handle)
        try:
            result = self.dispatcher.result(handle)
        except InfrastructureFault as exc:
            self._fault(exc.kind, exc.detail)
            if exc.kind == "inference_actor":
                unit.deaths += int(exc.during_task)
                unit.avoid.add(slot)
                if self._isolate_or_blame(batch, unit, deaths=True, detail=exc.detail):
                    return
            self._retry_later(unit)
            return
        except BatchFailed as exc:
            unit.failures += 1
            unit.avoid.add(slot)
            log.warning("%s: %d frame(s) failed on inference actor %d: %s", self.name, len(unit.tasks), slot,
                        exc.detail)
            if not self._isolate_or_blame(batch, unit, deaths=False, detail=exc.detail):
                unit.waiting_on_fault = False  # a live actor answered: not the infrastructure
                unit.retry_at = self._clock()  # on another live actor, now
            return
        self._clear(*_CLEARED_BY_A_WRITE)
        batch.units.remove(unit)
        self._account(result)
        for index in result.conflicts:
            task = unit.tasks[index]
            self._dead_letter(batch, RecordView.of(task), "frame_id_conflict",
                              f"frame_id {task.frame_id!r} is stored with other content (sha256 {task.content_sha256})",
                              task.record_sha256)

    def _isolate_or_blame(self, batch: _Batch, unit: _Unit, *, deaths: bool, detail: str) -> bool:
        """Split a repeatedly failing batch into single frames, or dead-letter a single frame that
        keeps failing; returns True when ``unit`` was replaced or removed."""
        config = self.config
        if len(unit.tasks) > 1:
            if (deaths and unit.deaths >= config.isolate_after_deaths) or (not deaths and unit.failures >= 2):
                log.warning("%s: batch of %d failed %d times; trying its frames alone", self.name,
                            len(unit.tasks), unit.attempts)
                batch.units.remove(unit)
                for task in unit.tasks:
                    single = _Unit([task], avoid=set(unit.avoid) if not deaths else set())
                    batch.units.append(single)
                    self._submit(single)
                return True
            return False
        if (deaths and unit.deaths >= config.poison_after_deaths) or (
            not deaths and unit.failures >= config.blame_after_failures
        ):
            task = unit.tasks[0]
            batch.units.remove(unit)
            self.counters.inference_errors += 1
            why = f"killed its inference actor {unit.deaths} times" if deaths else f"failed alone {unit.failures} times"
            self._dead_letter(batch, RecordView.of(task), "inference_error", f"{why}: {detail}"[:500],
                              task.record_sha256)
            return True
        return False

    def _account(self, result: WriteResult) -> None:
        self.counters.add_write(result.stored, result.redelivered, result.alerts_sent, result.bank_versions)
        self.latencies_ms.extend(result.latencies_ms)
        self._unreported_latencies.extend(result.latencies_ms)

    # --- commit --------------------------------------------------------------------------------
    def _commit(self) -> None:
        """Write the finished prefix's dead letters once, then commit its offsets (retried on a fault)."""
        if not self._finished or self._clock() < self._commit_retry_at:
            return
        try:
            self.outbox.settle([letter for batch in self._finished for letter in batch.dead])
        except InfrastructureFault as exc:
            self._commit_later(exc.kind, exc)
            return
        generation = getattr(self.source, "generation", 0)
        offsets: dict[tuple[str, int], int] = {}
        stale = 0
        for batch in self._finished:
            if batch.generation != generation:  # read before the source reconnected: replayed, not committed
                stale += 1
                continue
            for tp, offset in batch.offsets.items():
                offsets[tp] = max(offsets.get(tp, -1), offset)
        if stale:
            self.counters.commit_failures += 1
            log.warning("%s: %d batches were read before the source reconnected; not committing them (replayed and "
                        "deduplicated)", self.name, stale)
        try:
            if offsets:
                self.source.commit(offsets)
                self.counters.committed_batches += 1
        except CommitRefused as exc:  # a rebalance moved the partition: its new owner replays, idempotently
            self.counters.commit_failures += 1
            log.warning("%s: commit refused (%s); the frames will be replayed and deduplicated", self.name, exc)
        except Exception as exc:
            self._commit_later(exc.kind if isinstance(exc, InfrastructureFault) else "broker", exc)
            return
        self._finished.clear()
        self._commit_retry_at = 0.0
        self._commit_failures_in_a_row = 0
        self._clear("dead_letter", "dead_letter_ledger", "broker")

    def _commit_later(self, kind: str, exc: BaseException) -> None:
        self._commit_failures_in_a_row += 1
        detail = exc.detail if isinstance(exc, InfrastructureFault) else f"{type(exc).__name__}: {exc}"
        self._fault(kind, detail)
        self._commit_retry_at = self._clock() + self.config.backoff_s(self._commit_failures_in_a_row)

    # --- reporting -----------------------------------------------------------------------------
    def _report(self, force: bool = False, running: bool = True) -> None:
        """Push the state to the monitor about once every ``report_every_s`` (never raises)."""
        if self._report_fn is None or (not force and self._clock() - self._reported_at < self.config.report_every_s):
            return
        state = self.state()
        state.pop("latencies_ms")
        try:
            self._report_fn(self.name, state, self._unreported_latencies, running)
        except Exception as exc:  # the monitor is optional: never fail the stream for it
            log.debug("%s: report failed: %s", self.name, exc)
        self._unreported_latencies = []
        self._reported_at = self._clock()
