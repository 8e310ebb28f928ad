"""The stream's live counters in one named Ray actor, read by ``/metrics`` and ``/healthz``.

Ingest loops (and the verdict actor) push cumulative counters (:class:`pipeline.stream.counters.StreamCounters`)
and the infrastructure faults they are holding on (``faults_active``) about once a second under a
source name that is unique per loop *generation*, so a restarted loop never resets the totals.
The supervisor counts the actors it recreated per role.

>>> monitor = StreamMonitor()
>>> monitor.report("ingest-0#1", {"polled": 3, "stored": 3}, [12.0, 40.0, 700.0])
>>> monitor.snapshot()["frames_stored"]
3
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime
from typing import Any

from pipeline.stream.counters import SNAPSHOT_NAMES, StreamCounters

__all__ = [
    "MONITOR_NAME", "NAMESPACE", "LATENCY_BUCKETS_MS", "ACTOR_ROLES", "StreamMonitor", "start_monitor", "get_monitor",
]

MONITOR_NAME = "linesight-monitor"
NAMESPACE = "linesight"
LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)

ACTOR_ROLES = ("ingest", "inference", "sink", "verdicts")  # actors the supervisor recreates
_VERDICT_COUNTERS = ("verdict_backlog", "verdict_skipped", "verdicts_written", "verdicts_rejected")
_WEBHOOK_COUNTERS = ("webhook_delivered", "webhook_failed", "webhook_retries", "webhook_dropped")


class StreamMonitor:
    """Aggregates counters from every source; the latency histogram is cumulative (Prometheus style)."""

    def __init__(self) -> None:
        self._sources: dict[str, dict[str, Any]] = {}
        self._bucket_counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # last one: above every bound
        self._latency_sum_ms = 0.0
        self._running: dict[str, bool] = {}
        self._restarts: dict[str, int] = dict.fromkeys(ACTOR_ROLES, 0)
        self._updated_at: datetime | None = None

    def report(self, source: str, counters: dict[str, Any], latencies_ms: list[float] | None = None,
               running: bool = True) -> None:
        """Replace ``source``'s cumulative counters and add its new latency observations."""
        self._sources[source] = dict(counters)
        self._running[source] = running
        for value in latencies_ms or ():
            self._bucket_counts[bisect.bisect_left(LATENCY_BUCKETS_MS, value)] += 1
            self._latency_sum_ms += value
        self._updated_at = datetime.now(UTC)

    def count_restart(self, role: str = "ingest") -> None:
        """The supervisor recreated an actor of ``role`` (one of :data:`ACTOR_ROLES`)."""
        self._restarts[role] = self._restarts.get(role, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Totals over all sources, in the shape the API's /metrics expects."""
        ingest = {k: v for k, v in self._sources.items() if k.startswith("ingest")}
        total = StreamCounters.total([StreamCounters.from_dict(c) for c in ingest.values()])
        out: dict[str, Any] = {key: getattr(total, name) for key, name in SNAPSHOT_NAMES.items()}
        faults: dict[str, str] = {}
        for source, counters in ingest.items():  # infrastructure faults the running loops are holding on
            if self._running.get(source):
                faults.update(counters.get("faults_active") or {})
        verdicts = self._sources.get("verdicts", {})
        webhooks = [c for k, c in self._sources.items() if k.startswith("webhook")]
        cumulative, running_total = {}, 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS_MS), "+Inf"), self._bucket_counts, strict=True):
            running_total += count
            cumulative[bound] = running_total
        out.update(
            faults_active=faults,
            stream_state="degraded" if faults else "ok",
            latency_ms_buckets=cumulative,
            latency_ms_sum=self._latency_sum_ms,
            latency_ms_count=running_total,
            ingest_running=sum(1 for k, up in self._running.items() if k.startswith("ingest") and up),
            ingest_restarts=self._restarts.get("ingest", 0),
            actor_restarts=dict(self._restarts),
            updated_at=self._updated_at.isoformat() if self._updated_at else None,
            **{key: int(verdicts.get(key, 0)) for key in _VERDICT_COUNTERS},
            **{key: sum(int(c.get(key, 0)) for c in webhooks) for key in _WEBHOOK_COUNTERS},
        )
        return out


def start_monitor() -> Any:
    """Create (or reuse) the named monitor actor of this Ray cluster, on the driver's node.

    On a cluster it must not sit on a worker node: losing that node would lose the stream's counters.
    """
    import ray

    from pipeline.stream.placement import driver_node_options

    return (
        ray.remote(num_cpus=0)(StreamMonitor)
        .options(name=MONITOR_NAME, namespace=NAMESPACE, get_if_exists=True, **driver_node_options())
        .remote()
    )


def get_monitor() -> Any | None:
    """The running stream's monitor, or None when no stream runs on this Ray cluster."""
    import ray

    try:
        return ray.get_actor(MONITOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None
