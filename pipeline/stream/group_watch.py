"""Partitions nobody consumes: notice them and make the group rebalance (the supervisor's group watch).

Kafka's group coordinator rebalances when a member's session expires, so a lost consumer's partitions
move to the members left. Tansu 0.6 (the embedded broker) does not: when a member it already assigned
partitions to expires (a SIGKILLed ingest loop, a node lost, a consumer replaced after a broker outage),
it drops the member but tells no one, and a member that rejoins gets its old assignment back. The
expired member's partitions then stay unowned for good and their frames wait in Kafka forever
(reproduced in ``tests/integration/connectors/test_group_orphans.py``). A *new* member joining makes
it rebalance over the live members.

:class:`OrphanedPartitionWatch` reads the ingest loops' stats (``partitions``, ``topic_partitions``) each
supervision round; when some partitions have had no owner for ``grace_s`` (longer than a session
timeout plus a rebalance) it names one loop, the one holding the fewest, to leave and rejoin the group as
a new member. At most one rejoin per ``grace_s``, none while a loop reports the broker away. On Kafka the
watch never fires. It sees only its own job's loops: one stream driver per consumer group (the
deployment model); ``LINESIGHT_PARTITION_WATCH=false`` turns it off.

>>> clock = iter([0.0, 5.0, 20.0]).__next__
>>> watch = OrphanedPartitionWatch(grace_s=12.0, clock=clock)
>>> loops = [{"running": True, "partitions": [0, 1], "topic_partitions": 4},
...          {"running": True, "partitions": [], "topic_partitions": 4}]
>>> watch.check(loops), watch.check(loops), watch.check(loops)
(None, None, 1)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["OrphanedPartitionWatch"]


class OrphanedPartitionWatch:
    """Which loop should rejoin its consumer group, if partitions have had no owner for ``grace_s``."""

    def __init__(self, grace_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if grace_s <= 0:
            raise ValueError(f"grace_s must be > 0, got {grace_s}")
        self.grace_s = grace_s
        self._clock = clock
        self._orphaned_since: float | None = None
        self._rejoined_at: float | None = None
        self.orphaned: list[int] = []  # partitions with no owner at the last check

    def check(self, loops: Sequence[Mapping[str, Any]]) -> int | None:
        """The index in ``loops`` (each loop's stats) of the loop to rejoin now, or None."""
        now = self._clock()
        running = [(index, loop) for index, loop in enumerate(loops) if loop.get("running")]
        total = max((int(loop.get("topic_partitions") or 0) for _, loop in running), default=0)
        owned = {int(p) for _, loop in running for p in loop.get("partitions") or ()}
        self.orphaned = sorted(set(range(total)) - owned)
        broker_away = any("broker" in (loop.get("faults_active") or {}) for _, loop in running)
        if not self.orphaned or broker_away or len(running) < len(loops):
            self._orphaned_since = None  # all owned, or a loop restarting / the broker away: not the group's fault
            return None
        if self._orphaned_since is None:
            self._orphaned_since = now
        waited = now - self._orphaned_since >= self.grace_s
        cooled = self._rejoined_at is None or now - self._rejoined_at >= self.grace_s
        if not (waited and cooled):
            return None
        self._rejoined_at, self._orphaned_since = now, None
        return min(running, key=lambda item: len(item[1].get("partitions") or ()))[0]
