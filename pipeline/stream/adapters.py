"""Kafka and SQL behind the ingest loop's ports (:mod:`pipeline.stream.ports`): frames source, bank lookup, ledger.

The dead-letter port is :class:`connectors.dead_letter.DeadLetterSink` as it is; the dispatcher is
:class:`pipeline.stream.dispatch.RayDispatcher`. Kafka errors become ``InfrastructureFault("broker")``; a
commit refused after a rebalance becomes ``CommitRefused``.

**The broker going away is noticed and survived.** kafka-python's ``poll`` returns nothing, without
an error, while the broker is down, and after a broker restart its consumer keeps a stale group
membership and positions (it never reads again). So :class:`KafkaSourcePort` asks the cluster for its
metadata (:class:`KafkaBrokerProbe`, on its own connection: a request on the consumer's would wait
behind a group rebalance) whenever polls have returned nothing for ``probe_interval_s``; no answer is
``InfrastructureFault("broker")``. Once the broker answers again it replaces its consumer
(``reconnect``: a new member of the group, from the committed offsets) and increases ``generation``,
so the loop does not commit offsets read by the old one (they replay).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.exceptions import CommitRefused, InfrastructureFault
from pipeline.stream.messages import ZERO_SHOT_VERSION, BankRef

__all__ = [
    "FLUSH_TIMEOUT_S", "KafkaBrokerProbe", "KafkaSourcePort", "SqlBankLookup", "SqlDeadLetterLedger",
    "stream_producer_factory",
]

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0  # the longest a dead-letter or alert flush blocks the stream (the producer's own limit: 120 s)
_PRODUCER_BLOCK_MS = 5000  # a send waits this long for metadata, a new producer this long for the broker


def stream_producer_factory(bootstrap_servers: str, *, max_request_size: int,
                            security: Mapping[str, Any] | None = None) -> Callable[[], Any]:
    """A function making the stream's producers (dead letters, alerts): no call blocks for more than 5 s while
    the broker is away (kafka-python's defaults: 60 s per send, 30 s to bootstrap)."""
    from connectors.kafka import make_producer

    def make() -> Any:
        return make_producer(bootstrap_servers, max_request_size=max_request_size, security=security,
                             max_block_ms=_PRODUCER_BLOCK_MS, bootstrap_timeout_ms=_PRODUCER_BLOCK_MS)

    return make


class KafkaBrokerProbe:
    """Does the cluster answer? A metadata request on an admin client of its own, bounded by ``timeout_ms``.

    Calling it raises (``KafkaError`` or ``ConnectorError``) when no broker answers; the client is made at the
    first call and reconnects by itself after a broker restart.
    """

    def __init__(self, bootstrap_servers: str, *, security: Mapping[str, Any] | None = None,
                 timeout_ms: int = 2000) -> None:
        if timeout_ms < 1:
            raise ValueError(f"timeout_ms must be >= 1, got {timeout_ms}")
        self.bootstrap_servers = bootstrap_servers
        self.security = security
        self.timeout_ms = timeout_ms
        self._admin: Any | None = None

    def __call__(self) -> None:
        from connectors.kafka import make_admin

        if self._admin is None:
            self._admin = make_admin(self.bootstrap_servers, security=self.security,
                                     request_timeout_ms=self.timeout_ms, bootstrap_timeout_ms=self.timeout_ms)
        self._admin.describe_cluster()

    def close(self) -> None:
        """Close its admin client."""
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()


class KafkaSourcePort:
    """:class:`connectors.source.KafkaFrameSource` with ``(topic, partition)`` tuples, classified errors, a
    liveness probe and a reconnect (see the module docstring).

    ``probe``: raises when the broker does not answer (None: no probe, an outage goes unnoticed);
    ``reconnect``: builds a new source after the broker was away (None: keep the old consumer).
    """

    def __init__(self, source: Any, *, probe: Callable[[], None] | None = None,
                 reconnect: Callable[[], Any] | None = None, probe_interval_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if probe_interval_s <= 0:
            raise ValueError(f"probe_interval_s must be > 0, got {probe_interval_s}")
        self._source: Any | None = source
        self._probe_fn = probe
        self._reconnect = reconnect
        self.probe_interval_s = probe_interval_s
        self._clock = clock
        self._heard_at = clock()  # the broker last answered (records or a probe)
        self._away = False
        self.generation = 0
        self.reconnects = 0

    def poll(self, timeout_ms: int, max_records: int) -> list[Any]:
        """Records of the assigned partitions; ``InfrastructureFault("broker")`` when the broker does not answer."""
        from kafka.errors import KafkaError

        if self._away:
            self._recover()
        assert self._source is not None
        try:
            records = self._source.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            self._away = True
            raise InfrastructureFault("broker", f"poll failed: {type(exc).__name__}: {exc}") from exc
        now = self._clock()
        if records:
            self._heard_at = now
        elif now - self._heard_at >= self.probe_interval_s:
            self._probe()
            self._heard_at = now
        return records

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit next offsets; ``CommitRefused`` after a rebalance or a reconnect (the offsets were read by the
        replaced consumer), ``InfrastructureFault("broker")`` when the broker does not answer."""
        from kafka import TopicPartition
        from kafka.errors import CommitFailedError, KafkaError

        if self._away:
            generation = self.generation
            self._recover()
            if self.generation != generation:
                raise CommitRefused("the source reconnected to the broker: offsets read before are replayed")
        assert self._source is not None
        try:
            self._source.commit({TopicPartition(topic, partition): offset
                                 for (topic, partition), offset in offsets.items()})
        except CommitFailedError as exc:
            raise CommitRefused(str(exc)) from exc
        except KafkaError as exc:
            self._away = True
            raise InfrastructureFault("broker", f"commit failed: {type(exc).__name__}: {exc}") from exc
        self._heard_at = self._clock()

    def assignment(self) -> set[tuple[str, int]]:
        """Assigned partitions as tuples (none while reconnecting)."""
        if self._source is None:
            return set()
        return {(tp.topic, tp.partition) for tp in self._source.assignment()}

    def close(self) -> None:
        """Leave the group without committing; close the probe."""
        if self._source is not None:
            self._source.close()
        close_probe = getattr(self._probe_fn, "close", None)
        if close_probe is not None:
            close_probe()

    def _probe(self) -> None:
        """``InfrastructureFault("broker")`` when the probe says the broker does not answer."""
        if self._probe_fn is None:
            return
        try:
            self._probe_fn()
        except Exception as exc:
            if not self._away:
                log.error("the broker does not answer (%s: %s); holding until it does", type(exc).__name__, exc)
            self._away = True
            raise InfrastructureFault("broker", f"the broker does not answer: {type(exc).__name__}: {exc}") from exc

    def _recover(self) -> None:
        """While away: probe; once the broker answers, replace the consumer (when ``reconnect`` is given)."""
        if self._source is not None:
            self._probe()
            if self._reconnect is None:
                self._away = False
                return
            old, self._source = self._source, None
            with contextlib.suppress(Exception):  # its group membership is stale: leaving may fail
                old.close()
        try:
            self._source = self._reconnect() if self._reconnect is not None else None
        except Exception as exc:  # the broker went away again: try again at the next poll
            raise InfrastructureFault("broker", f"reconnect failed: {type(exc).__name__}: {exc}") from exc
        self.generation += 1
        self.reconnects += 1
        self._away = False
        self._heard_at = self._clock()
        log.warning("the broker answers again: new consumer (reconnect %d); frames read before and not committed "
                    "are read again and deduplicated", self.reconnects)


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
        for cls in self.zero_shot_classes:  # no bank yet: the trained decoder alone
            banks.setdefault(cls, BankRef(cls, ZERO_SHOT_VERSION, ""))
        registered = [row.product_class for row in self.repository.cold_starts(state="scoring")]
        for cls in (*self.cold_start_classes, *registered):  # no bank yet: scored against its own recent frames
            banks.setdefault(cls, BankRef(cls, ZERO_SHOT_VERSION, "", cold_start=True))
        return banks


class SqlDeadLetterLedger:
    """The dead-letter ledger port on :class:`storage.repository.Repository` (raises whatever SQL raises)."""

    def __init__(self, repository: Any) -> None:
        self.repository = repository

    def recorded(self, keys: list[tuple[str, int, int, str]]) -> set[tuple[str, int, int, str]]:
        """Those of ``keys`` in the ledger."""
        from storage.dead_letters import DeadLetterKey

        return {tuple(key) for key in self.repository.recorded_dead_letters([DeadLetterKey(*k) for k in keys])}

    def record(self, entries: list[tuple[tuple[str, int, int, str], str, str]]) -> None:
        """Add written dead letters ``(key, reason, detail)``."""
        from storage.dead_letters import DeadLetterEntry, DeadLetterKey

        self.repository.record_dead_letters([DeadLetterEntry(DeadLetterKey(*key), reason, detail)
                                             for key, reason, detail in entries])
