"""The Ray side of dispatch: score a batch on a live inference actor, chain it into the sink, classify failures.

``sink.write.remote(actor.score.remote(tasks))``: the scored batch goes from the inference actor to
the sink without a round trip through the ingest loop. When the write fails, :meth:`RayDispatcher.result`
says whose fault it was:

- the inference actor died (``RayActorError``) → ``InfrastructureFault("inference_actor")``; that slot
  is avoided for ``probation_s`` (Ray may be restarting it) or until the supervisor replaces it;
- a bank could not load (``BankUnavailableError``) → ``InfrastructureFault("bank")``;
- scoring raised on a live actor → ``BatchFailed`` (a frame in the batch may be poison);
- the sink died → ``InfrastructureFault("sink_actor")``; the sink refused a record (``InvalidRecordError``)
  → ``BatchFailed``; the database or broker failed → ``InfrastructureFault("database" | "broker")``;
  anything else the sink raised → ``InfrastructureFault("sink")``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from pipeline.exceptions import BankUnavailableError, BatchFailed, InfrastructureFault
from pipeline.stream.messages import FrameTask, WriteResult

__all__ = ["RayDispatcher", "classify_sink_error"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Attempt:
    slot: int
    actor: Any
    score_ref: Any
    write_ref: Any
    settled: bool = False


def _cause(exc: BaseException) -> BaseException:
    """The user exception inside a ``RayTaskError`` (or ``exc`` itself)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _describe(exc: BaseException) -> str:
    cause = _cause(exc)
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"[:400]


def classify_sink_error(exc: BaseException) -> Exception:
    """What a failed sink write means for the ingest loop (see the module docstring)."""
    import ray

    if isinstance(exc, ray.exceptions.RayActorError):
        return InfrastructureFault("sink_actor", f"the sink actor died: {_describe(exc)}")
    cause = _cause(exc)
    from storage.exceptions import DatabaseUnavailableError, InvalidRecordError

    if isinstance(cause, InvalidRecordError):
        return BatchFailed(f"the sink refused a record: {_describe(exc)}")
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(cause, DatabaseUnavailableError | DBAPIError | PoolTimeout | ConnectionError | OSError):
        return InfrastructureFault("database", _describe(exc))
    from kafka.errors import KafkaError

    from connectors.exceptions import ConnectorError

    if isinstance(cause, KafkaError | ConnectorError):
        return InfrastructureFault("broker", _describe(exc))
    return InfrastructureFault("sink", _describe(exc))


class RayDispatcher:
    """Round-robins batches over live inference actors (idle ones first) of one ingest loop.

    :meth:`set_inference` and :meth:`set_sink` swap in actors the supervisor recreated (called from
    the Ray actor's method thread while the loop runs: guarded by a lock).
    """

    def __init__(self, inference: list[Any], sink: Any, *, probation_s: float = 2.0) -> None:
        if not inference:
            raise ValueError("a dispatcher needs at least one inference actor")
        self._actors = list(inference)
        self._sink = sink
        self._probation_s = probation_s
        self._down_until: dict[int, float] = {}
        self._known_dead: dict[int, Any] = {}  # slot -> the handle already seen dead (its deaths blame nobody)
        self._inflight: dict[int, int] = {}
        self._next = 0
        self._lock = threading.Lock()

    def set_inference(self, actors: list[Any]) -> None:
        """Replace the actor list (a recreated actor in a slot clears that slot's down mark)."""
        with self._lock:
            for slot, actor in enumerate(actors):
                if slot >= len(self._actors) or actor != self._actors[slot]:
                    self._down_until.pop(slot, None)
                    self._known_dead.pop(slot, None)
            self._actors = list(actors)

    def set_sink(self, sink: Any) -> None:
        """Use a recreated sink actor from now on."""
        with self._lock:
            self._sink = sink

    def _live(self, now: float) -> list[int]:
        return [s for s in range(len(self._actors)) if self._down_until.get(s, 0.0) <= now]

    def submit(self, tasks: list[FrameTask], avoid: frozenset[int] = frozenset()) -> _Attempt:
        """Score ``tasks`` on a live actor (not one in ``avoid`` if another is live), then write them."""
        with self._lock:
            live = self._live(time.monotonic())
            if not live:
                raise InfrastructureFault("no_actor", f"all {len(self._actors)} inference actors are down")
            choices = [s for s in live if s not in avoid] or live
            least = min(self._inflight.get(s, 0) for s in choices)
            idle = [s for s in choices if self._inflight.get(s, 0) == least]
            slot = idle[self._next % len(idle)]
            self._next += 1
            actor, sink = self._actors[slot], self._sink
            self._inflight[slot] = self._inflight.get(slot, 0) + 1
        score_ref = actor.score.remote(tasks)
        return _Attempt(slot, actor, score_ref, sink.write.remote(score_ref))

    def wait(self, handles: list[_Attempt], timeout_s: float) -> list[_Attempt]:
        """The attempts whose sink write finished (waits up to ``timeout_s`` for the first one)."""
        import ray

        if not handles:
            return []
        by_ref = {attempt.write_ref: attempt for attempt in handles}
        refs = list(by_ref)
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout_s)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return [by_ref[ref] for ref in ready]

    def slot(self, handle: _Attempt) -> int:
        """The inference actor slot the attempt ran on."""
        return handle.slot

    def idle(self) -> bool:
        """True when a live inference actor has no batch of this loop in flight."""
        with self._lock:
            return any(self._inflight.get(s, 0) == 0 for s in self._live(time.monotonic()))

    def result(self, handle: _Attempt) -> WriteResult:
        """The sink's result, or the classified failure (see the module docstring)."""
        import ray

        self._settle(handle)
        try:
            result = ray.get(handle.write_ref)
        except Exception as exc:
            raise self._classify(handle, exc) from None
        with self._lock:
            self._known_dead.pop(handle.slot, None)  # it answered: alive again (e.g. restarted by Ray)
        return result

    def _settle(self, handle: _Attempt) -> None:
        if handle.settled:
            return
        handle.settled = True
        with self._lock:
            self._inflight[handle.slot] = max(0, self._inflight.get(handle.slot, 0) - 1)

    def _classify(self, handle: _Attempt, exc: BaseException) -> Exception:
        import ray

        ready, _ = ray.wait([handle.score_ref], timeout=0)
        if not ready:  # scoring still runs: the sink failed on its own
            return classify_sink_error(exc)
        try:
            ray.get(handle.score_ref)
        except ray.exceptions.RayActorError as died:
            return self._actor_died(handle, died)
        except (ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError) as lost:
            return InfrastructureFault("inference_actor", f"scored batch lost: {_describe(lost)}")
        except Exception as failed:
            cause = _cause(failed)
            if isinstance(cause, BankUnavailableError):
                return InfrastructureFault("bank", str(cause)[:400])
            return BatchFailed(_describe(failed), actor_slot=handle.slot)
        return classify_sink_error(exc)

    def _actor_died(self, handle: _Attempt, died: BaseException) -> InfrastructureFault:
        with self._lock:
            seen_before = self._known_dead.get(handle.slot) == handle.actor
            self._known_dead[handle.slot] = handle.actor
            if self._actors[handle.slot] == handle.actor:
                self._down_until[handle.slot] = time.monotonic() + self._probation_s
        log.warning("inference actor %d died: %s", handle.slot, _describe(died))
        return InfrastructureFault(
            "inference_actor", f"inference actor {handle.slot} died: {_describe(died)}",
            actor_slot=handle.slot, during_task=not seen_before,
        )
