"""What the ingest loop is given instead of building it: source, dead letters, bank lookup, dispatcher.

The loop (:mod:`pipeline.stream.ingest`) imports neither Kafka nor Ray. The stream plugs in the Kafka and
Ray adapters (:mod:`pipeline.stream.adapters`, :mod:`pipeline.stream.dispatch`); unit tests plug in fakes in memory.

Partitions are plain ``(topic, partition)`` tuples; offsets are the *next* offset to read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.stream.messages import BankRef, FrameTask, WriteResult

__all__ = ["FrameSource", "DeadLetters", "DeadLetterLedger", "BankLookup", "Dispatcher", "IngestConfig", "Reporter"]

Partition = tuple[str, int]
LedgerKey = tuple[str, int, int, str]  # (topic, partition, offset, record_sha256) of a dead-lettered record


class FrameSource(Protocol):
    """One consumer of the frames topic with manual commits.

    ``generation`` (optional, default 0) grows each time the source replaced its consumer after the
    broker was unreachable: offsets read before that are not committed through the new one (they replay).
    """

    def poll(self, timeout_ms: int, max_records: int) -> list[Any]:
        """Up to ``max_records`` records (``topic, partition, offset, key, value, headers``)."""

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit ``{(topic, partition): next offset}``; ``CommitRefused`` after a rebalance,
        ``InfrastructureFault("broker")`` when the broker cannot be reached."""

    def assignment(self) -> set[Partition]:
        """Partitions held now (empty until the group join completes)."""

    def close(self) -> None:
        """Leave the group without committing."""


class DeadLetters(Protocol):
    """The dead-letter topic: ``send`` queues, ``flush`` makes durable or raises."""

    def send(self, record: Any, reason: str, detail: str) -> Any:
        """Queue ``record`` with its reason (may raise when the producer refuses it); returns a handle whose
        ``succeeded()`` says it was written (after a flush), or None."""

    def flush(self) -> None:
        """Block until every queued dead letter is written; raise if one was not."""


class DeadLetterLedger(Protocol):
    """Which source records were dead-lettered already (SQL): a replayed record is not dead-lettered twice.

    Keys are ``(topic, partition, offset, record_sha256)``; both methods raise when SQL is down.
    """

    def recorded(self, keys: list[LedgerKey]) -> set[LedgerKey]:
        """Those of ``keys`` in the ledger."""

    def record(self, entries: list[tuple[LedgerKey, str, str]]) -> None:
        """Add written dead letters ``(key, reason, detail)``; a key already there is skipped."""


BankLookup = Callable[[], dict[str, BankRef]]
"""The bank reference of every known class (active banks, zero-shot classes); raises when SQL is down."""

Reporter = Callable[[str, dict[str, Any], list[float], bool], None]
"""``report(source, counters, new_latencies_ms, running)``: pushes a loop's state to the monitor."""


class Dispatcher(Protocol):
    """Sends a batch to an inference actor and on to the sink; returns a handle to wait on."""

    def submit(self, tasks: list[FrameTask], avoid: frozenset[int] = frozenset()) -> Any:
        """Start scoring and storing ``tasks`` on a live actor, if possible not one in ``avoid``.

        Raises ``InfrastructureFault("no_actor")`` when no inference actor is up.
        """

    def wait(self, handles: list[Any], timeout_s: float) -> list[Any]:
        """Those of ``handles`` that finished within ``timeout_s`` (0: don't block)."""

    def result(self, handle: Any) -> WriteResult:
        """What the sink did; raises ``InfrastructureFault`` (not the frames' fault) or ``BatchFailed``."""

    def slot(self, handle: Any) -> int:
        """The inference actor slot ``handle`` ran on."""

    def idle(self) -> bool:
        """True when some live inference actor has nothing of this loop in flight (adaptive batching)."""


@dataclass(frozen=True)
class IngestConfig:
    """What one ingest loop needs to know (built from ``Settings`` by :meth:`from_settings`)."""

    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.5  # wait at most this long to fill a batch, only while every actor is busy
    max_inflight_batches: int = 3  # backpressure: stop polling at this many unfinished batches
    bank_poll_interval_s: float = 1.0
    max_frame_bytes: int = 1 << 20
    retry_initial_s: float = 0.2  # first backoff after an infrastructure fault (doubles per attempt)
    retry_max_s: float = 5.0  # backoff ceiling
    isolate_after_deaths: int = 3  # actor deaths under one batch before its frames are tried alone
    poison_after_deaths: int = 3  # actor deaths under one frame alone before it is dead-lettered
    blame_after_failures: int = 2  # errors of one frame alone on live actors before it is dead-lettered
    report_every_s: float = 1.0
    drain_timeout_s: float = 60.0  # on stop: give up draining (uncommitted frames replay) after this
    parse_options: Mapping[str, Any] = field(default_factory=dict)  # more keyword arguments of parse_record

    @classmethod
    def from_settings(cls, settings: Any) -> IngestConfig:
        """The loop's config from the app's ``Settings``."""
        return cls(
            max_batch_size=settings.max_batch_size,
            batch_wait_timeout_s=settings.batch_wait_timeout_s,
            max_inflight_batches=settings.max_inflight_batches,
            bank_poll_interval_s=settings.bank_poll_interval_s,
            max_frame_bytes=settings.max_frame_bytes,
            retry_initial_s=settings.fault_retry_initial_s,
            retry_max_s=settings.fault_retry_max_s,
            parse_options={
                "max_frame_pixels": settings.max_frame_pixels,
                "max_capture_age_s": settings.max_capture_age_s,
                "max_capture_skew_s": settings.max_capture_skew_s,
            },
        )

    def backoff_s(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1, 2, ...): exponential, capped at ``retry_max_s``."""
        return min(self.retry_max_s, self.retry_initial_s * (2 ** max(0, attempt - 1)))
