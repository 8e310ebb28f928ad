"""Kafka and SQL behind the ingest loop's ports (:mod:`pipeline.ports`): the frames source and the bank lookup.

The dead-letter port is :class:`connectors.dead_letter.DeadLetterSink` as it is; the dispatcher is
:class:`pipeline.dispatch.RayDispatcher`. Kafka errors become ``InfrastructureFault("broker")``; a
commit refused after a rebalance becomes ``CommitRefused``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.exceptions import CommitRefused, InfrastructureFault
from pipeline.messages import ZERO_SHOT_VERSION, BankRef

__all__ = ["KafkaSourcePort", "SqlBankLookup"]


class KafkaSourcePort:
    """:class:`connectors.source.KafkaFrameSource` with ``(topic, partition)`` tuples and classified errors."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def poll(self, timeout_ms: int, max_records: int) -> list[Any]:
        """Records of the assigned partitions; ``InfrastructureFault("broker")`` when the client fails."""
        from kafka.errors import KafkaError

        try:
            return self._source.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise InfrastructureFault("broker", f"poll failed: {type(exc).__name__}: {exc}") from exc

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit next offsets; ``CommitRefused`` after a rebalance, ``InfrastructureFault("broker")`` else."""
        from kafka import TopicPartition
        from kafka.errors import CommitFailedError, KafkaError

        try:
            self._source.commit({TopicPartition(topic, partition): offset
                                 for (topic, partition), offset in offsets.items()})
        except CommitFailedError as exc:
            raise CommitRefused(str(exc)) from exc
        except KafkaError as exc:
            raise InfrastructureFault("broker", f"commit failed: {type(exc).__name__}: {exc}") from exc

    def assignment(self) -> set[tuple[str, int]]:
        """Assigned partitions as tuples."""
        return {(tp.topic, tp.partition) for tp in self._source.assignment()}

    def close(self) -> None:
        """Leave the group without committing."""
        self._source.close()


class SqlBankLookup:
    """The active bank of every class from SQL, plus the no-bank reference of each zero-shot class and of
    each class in cold start (``cold_start_classes`` and the ``cold_starts`` rows still scoring).

    Raises whatever SQL raises (the loop keeps its last banks and retries with backoff).
    """

    def __init__(
        self, repository: Any, zero_shot_classes: tuple[str, ...] = (), cold_start_classes: tuple[str, ...] = ()
    ) -> None:
        self.repository = repository
        self.zero_shot_classes = tuple(zero_shot_classes)
        self.cold_start_classes = tuple(cold_start_classes)

    def __call__(self) -> dict[str, BankRef]:
        banks = {cls: BankRef(cls, row.version, row.path, row.sha256) for cls, row in self.repository.active_banks().items()}
        registered = [row.product_class for row in self.repository.cold_starts(state="scoring")]
        for cls in (*self.cold_start_classes, *registered):  # no bank yet: scored against its own recent frames
            banks.setdefault(cls, BankRef(cls, ZERO_SHOT_VERSION, "", cold_start=True))
        for cls in self.zero_shot_classes:  # no bank yet: the trained decoder alone
            banks.setdefault(cls, BankRef(cls, ZERO_SHOT_VERSION, ""))
        return banks
