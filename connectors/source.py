"""The frames source: one consumer of a consumer group, manual commits (at-least-once).

Partitions come from the group coordinator (``share=None``: subscribe, Kafka rebalances them over the
members) or from the caller (``share=(index, count)``: this consumer reads the partitions ``p`` with
``p % count == index``, with no group membership; offsets are committed to ``group_id`` all the same).
The stream uses shares: its supervisor knows every loop and restarts a lost one on the same share, so
nothing depends on the coordinator noticing a dead member (the embedded Tansu 0.6 left a dead member's
partitions without an owner, docs/deployment.md).

The caller commits the *next* offset to read per partition (last processed + 1) only after its
sinks flushed; a new consumer in the same group resumes there after a restart or rebalance.
Calls that talk to the group coordinator are bounded (``commit_timeout_ms``, ``timeout_ms`` of
:meth:`KafkaFrameSource.committed`, ``close_timeout_ms``): while the broker is away they raise
``KafkaTimeoutError`` instead of blocking the caller (kafka-python's own default is 30 s).

>>> source = KafkaFrameSource("127.0.0.1:9092", "linesight.frames", "linesight-inspect")  # doctest: +SKIP
>>> records = source.poll(timeout_ms=500, max_records=16)  # doctest: +SKIP
>>> source.commit({TopicPartition(r.topic, r.partition): r.offset + 1 for r in records})  # doctest: +SKIP
>>> source.close()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from connectors.exceptions import ConnectorError
from connectors.kafka import make_consumer, topic_partitions

__all__ = ["KafkaFrameSource", "TopicPartition", "partitions_of_share"]

log = logging.getLogger(__name__)


def partitions_of_share(partitions: list[int], index: int, count: int) -> list[int]:
    """The partitions of share ``index`` of ``count``: those with ``p % count == index``.

    >>> partitions_of_share(list(range(6)), 1, 3)
    [1, 4]
    """
    return [p for p in partitions if p % count == index]


class KafkaFrameSource:
    """Read ``topic`` as a consumer of ``group_id`` (or its ``share`` of the partitions); :meth:`poll` returns
    records, :meth:`commit` stores progress. ``fetch_max_wait_ms`` bounds how long a fetch waits at the
    broker (Tansu holds every fetch that long, whatever arrives meanwhile)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        *,
        client_id: str | None = None,
        max_poll_records: int = 64,
        session_timeout_ms: int = 6000,
        fetch_max_wait_ms: int = 500,
        security: Mapping[str, Any] | None = None,
        commit_timeout_ms: int = 10_000,
        close_timeout_ms: int = 5_000,
        share: tuple[int, int] | None = None,
    ) -> None:
        if not group_id:
            raise ConnectorError(f"a frame source needs a consumer group id, got {group_id!r}")
        if commit_timeout_ms < 1 or close_timeout_ms < 1:
            raise ConnectorError(f"commit_timeout_ms and close_timeout_ms must be >= 1, got {commit_timeout_ms} and "
                                 f"{close_timeout_ms}")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        self.commit_timeout_ms = commit_timeout_ms
        self.close_timeout_ms = close_timeout_ms
        self._consumer = make_consumer(
            bootstrap_servers,
            group_id=group_id,
            client_id=client_id,
            max_poll_records=max_poll_records,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, min(1000, session_timeout_ms // 3)),
            security=security,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        try:
            if share is None:
                self._consumer.subscribe([topic])
            else:
                self._consumer.assign([TopicPartition(topic, p) for p in self._share(share, security)])
        except (KafkaError, ValueError, ConnectorError) as exc:
            self._consumer.close(autocommit=False)
            raise ConnectorError(f"cannot read topic {topic!r} on {bootstrap_servers!r}: {exc}") from exc
        self._closed = False

    def _share(self, share: tuple[int, int], security: Mapping[str, Any] | None) -> list[int]:
        """The topic's partitions of ``share`` = (index, count); asks the cluster, bounded by ``close_timeout_ms``."""
        index, count = share
        if not 0 <= index < count:
            raise ConnectorError(f"a partition share needs 0 <= index < count, got {share!r}")
        partitions = topic_partitions(self.bootstrap_servers, self.topic, security=security,
                                      timeout_ms=self.close_timeout_ms)
        mine = partitions_of_share(partitions, index, count)
        if not mine:
            log.warning("topic %r has %d partitions: share %d of %d reads none", self.topic, len(partitions),
                        index, count)
        return mine

    def poll(self, timeout_ms: int = 100, max_records: int | None = None) -> list[Any]:
        """Up to ``max_records`` ConsumerRecords, waiting at most ``timeout_ms``; order within a partition kept.

        The first calls also join the group (about half of ``session_timeout_ms``) and may return nothing.
        """
        batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [record for records in batches.values() for record in records]

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``{partition: next offset to read}`` synchronously.

        Raises ``kafka.errors.CommitFailedError`` (a ``KafkaError``) when the group rebalanced and the
        partition moved: the new owner replays from the last commit, so the caller just logs it;
        ``KafkaTimeoutError`` after ``commit_timeout_ms`` when the coordinator does not answer.
        """
        if not offsets:
            return
        for tp, offset in offsets.items():
            if offset < 0:
                raise ConnectorError(f"cannot commit negative offset {offset} for {tp.topic}[{tp.partition}]")
        self._consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()},
                              timeout_ms=self.commit_timeout_ms)

    def committed(self, partition: TopicPartition, timeout_ms: int | None = None) -> int | None:
        """The group's committed offset of ``partition`` (None when nothing was committed); asks the group
        coordinator, so it also tells whether the broker answers (``KafkaTimeoutError`` after ``timeout_ms``)."""
        return self._consumer.committed(partition, timeout_ms=timeout_ms)

    def assignment(self) -> set[TopicPartition]:
        """Partitions currently assigned to this consumer (with ``share=None``: empty until the group join
        completes)."""
        return set(self._consumer.assignment())

    def close(self) -> None:
        """Leave the group without committing; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._consumer.close(autocommit=False, timeout_ms=self.close_timeout_ms)

    def __enter__(self) -> KafkaFrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
