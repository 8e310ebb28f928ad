"""The stream's counters in one typed object with a merge (ingest loops, the job's total, the monitor).

An ingest loop keeps one :class:`StreamCounters`; the job adds the loops' counters with
:meth:`StreamCounters.merge`; the monitor does the same and names them for ``/metrics`` with
:data:`SNAPSHOT_NAMES`. A new counter is one field here, nowhere else.

>>> a = StreamCounters(polled=3, stored=2); a.count_dead_letter("oversize")
>>> other = StreamCounters.from_dict({"polled": 1, "dead_lettered": 1, "dead_letter_reasons": {"oversize": 1}})
>>> total = a.merge(other)
>>> (total.polled, total.dead_lettered, total.dead_letter_reasons)
(4, 2, {'oversize': 2})
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["StreamCounters", "SNAPSHOT_NAMES", "add_counts"]


def add_counts(into: dict[str, int], other: dict[str, int]) -> dict[str, int]:
    """Add ``other``'s counts to ``into`` key by key; returns ``into``."""
    for key, count in other.items():
        into[key] = into.get(key, 0) + int(count)
    return into


@dataclass
class StreamCounters:
    """Cumulative counters of one ingest loop, or a sum of several (all fields add up under merge)."""

    polled: int = 0  # records read from the frames topic
    assigned_partitions: int = 0  # 0 until the consumer group join completes
    batches: int = 0  # batches formed from polled records
    stored: int = 0  # rows newly inserted
    redelivered: int = 0  # frames already stored (a replay): nothing written twice
    dead_lettered: int = 0  # frames written to the dead-letter topic for their own fault (each once)
    dead_letters_replayed: int = 0  # dead letters not sent again: the ledger had them (a replay)
    alerts_sent: int = 0
    committed_batches: int = 0  # successful offset commits
    commit_failures: int = 0  # commits refused after a rebalance or a reconnect (those frames replay)
    inference_errors: int = 0  # poison frames: failed alone on a healthy inference actor
    bank_swaps: int = 0  # hot swaps seen by this loop
    batch_retries: int = 0  # batch attempts re-sent after a failure (on another actor when one is up)
    infra_faults: int = 0  # failed attempts caused by infrastructure (database, broker, actors, banks)
    source_reconnects: int = 0  # consumers replaced after the broker was away
    bank_versions: dict[str, int] = field(default_factory=dict)  # "class@vN" -> frames stored with it
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  # reason -> frames
    fault_kinds: dict[str, int] = field(default_factory=dict)  # infrastructure fault kind -> failed attempts

    def count_dead_letter(self, reason: str) -> None:
        """One more frame dead-lettered for ``reason``."""
        self.dead_lettered += 1
        self.dead_letter_reasons[reason] = self.dead_letter_reasons.get(reason, 0) + 1

    def count_fault(self, kind: str) -> None:
        """One more attempt failed for an infrastructure fault of ``kind``."""
        self.infra_faults += 1
        self.fault_kinds[kind] = self.fault_kinds.get(kind, 0) + 1

    def add_write(self, stored: int, redelivered: int, alerts_sent: int, bank_versions: dict[str, int]) -> None:
        """Account for what a sink write did."""
        self.stored += stored
        self.redelivered += redelivered
        self.alerts_sent += alerts_sent
        add_counts(self.bank_versions, bank_versions)

    def merge(self, other: StreamCounters) -> StreamCounters:
        """A new object holding the sum of both (dicts added key by key)."""
        out = StreamCounters()
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                setattr(out, f.name, add_counts(add_counts({}, mine), theirs))
            else:
                setattr(out, f.name, mine + theirs)
        return out

    @classmethod
    def total(cls, many: list[StreamCounters]) -> StreamCounters:
        """The sum of ``many`` (an empty sum is all zeros)."""
        out = cls()
        for counters in many:
            out = out.merge(counters)
        return out

    def as_dict(self) -> dict[str, Any]:
        """A plain, picklable copy (dicts copied)."""
        return {f.name: dict(v) if isinstance(v := getattr(self, f.name), dict) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StreamCounters:
        """Read the counters out of ``values`` (other keys, e.g. ``latencies_ms`` or ``running``, are ignored)."""
        out = cls()
        for f in fields(cls):
            if f.name in values and values[f.name] is not None:
                value = values[f.name]
                setattr(out, f.name, {str(k): int(v) for k, v in value.items()} if isinstance(value, dict) else int(value))
        return out


# snapshot key read by the API's /metrics and /healthz -> counter field
SNAPSHOT_NAMES = {
    "frames_in": "polled",
    "frames_stored": "stored",
    "frames_redelivered": "redelivered",
    "dead_letters_replayed": "dead_letters_replayed",
    "alerts_sent": "alerts_sent",
    "bank_swaps": "bank_swaps",
    "commit_failures": "commit_failures",
    "inference_errors": "inference_errors",
    "batch_retries": "batch_retries",
    "infra_faults": "infra_faults",
    "dead_lettered": "dead_letter_reasons",
    "bank_versions": "bank_versions",
    "fault_kinds": "fault_kinds",
}
