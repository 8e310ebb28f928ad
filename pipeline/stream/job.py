"""The stream as Ray actors: start, supervise (recreate dead actors), stop with a drain.

    ingest (Kafka consumer loop) ──► inference (encoder + bank + map) ──► sink (SQL + alerts)

On a multi-node Ray cluster (docs/deployment.md, "Scale knobs"): ingest loops (at most one per partition
of the frames topic) and their sinks are spread over the nodes (Ray's SPREAD), inference actors follow
``placement_strategy`` (pipeline/stream/placement.py), the monitor stays on the driver's node. When a node dies,
Ray restarts the inference actors elsewhere (``max_restarts``) and the supervisor recreates the ingest
loops and sinks it lost; the new loops resume from the committed offsets.

With ``partition_assignment=static`` (the default) ingest loop ``i`` of ``n`` reads the frames partitions
``p % n == i``, and a recreated loop takes the same ones back, so no partition waits for the group
coordinator to notice a dead consumer (``group``: the coordinator assigns and rebalances them).

A supervisor thread (every ``supervise_interval_s``) recreates inference, sink, verdict and ingest
actors that Ray gave up on (``max_restarts`` used up, killed, crashed) and hands the new handles to
the actors that use them; restarts are counted per role in :meth:`Pipeline.stats` and the monitor.

>>> # with Pipeline(settings, bootstrap_servers) as pipeline: ... pipeline.stats()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Literal, Protocol

from pipeline.exceptions import PipelineError
from pipeline.stream.counters import StreamCounters
from pipeline.stream.ingest_service import IngestService, IngestSettings
from pipeline.stream.verdicts import VerdictSettings

__all__ = ["Pipeline", "IngestService", "RaySettings", "StreamSettings", "init_ray"]

log = logging.getLogger(__name__)

INGEST_CPUS = 0.25  # I/O bound: Kafka client and parsing
SINK_CPUS = 0.25  # I/O bound: SQL and the alert producer
VERDICT_CPUS = 0.25  # LLM verdicts: low priority, 1 torch thread, niced; fits beside the others


class RaySettings(Protocol):
    """What :func:`init_ray` reads (``linesight.settings.Settings`` has it all)."""

    ray_address: str | None
    ray_num_cpus: int | None


class StreamSettings(RaySettings, IngestSettings, VerdictSettings, Protocol):
    """What the stream's wiring reads besides what its actors read: ``linesight.settings.Settings`` has it all
    (the inference and sink configs, the placement and the cold start read theirs from it, duck-typed)."""

    inference_actors: int
    batch_wait_timeout_s: float
    max_inflight_batches: int
    bank_cache_size: int
    max_bank_rows: int
    llm_verdicts: bool
    verdict_drain_s: float
    api_base_url: str | None
    supervise_interval_s: float
    partition_assignment: Literal["static", "group"]


def init_ray(settings: RaySettings, *, log_to_driver: bool = True) -> None:
    """Connect to ``settings.ray_address`` or start a local Ray (no dashboard: it costs ~900 MB)."""
    import ray

    if ray.is_initialized():
        return
    if not settings.ray_address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-machine cluster
    try:
        if settings.ray_address:
            ray.init(address=settings.ray_address, log_to_driver=log_to_driver)
        else:
            ray.init(
                num_cpus=settings.ray_num_cpus,
                include_dashboard=False,
                log_to_driver=log_to_driver,
                configure_logging=False,
            )
    except Exception as exc:  # ray raises plain ConnectionError/RuntimeError
        raise PipelineError(f"could not start Ray (address={settings.ray_address!r}): {exc}") from None


class Pipeline:
    """Owns the actors of one stream; use as a context manager or call start()/stop()."""

    def __init__(self, settings: StreamSettings, bootstrap_servers: str, *, ingest_loops: int = 1,
                 supervise: bool = True) -> None:
        from pipeline.stream.placement import check_ingest_loops

        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.ingest_loops = check_ingest_loops(ingest_loops, settings.frames_partitions)
        self.inference: list[Any] = []
        self.sinks: list[Any] = []
        self.ingest: list[Any] = []
        self.restarts_by_role: dict[str, int] = {"ingest": 0, "inference": 0, "sink": 0, "verdicts": 0}
        self.monitor: Any | None = None
        self.verdicts: Any | None = None  # LLM verdicts: VerdictWorker actor when llm_verdicts
        self.verdict_stats: dict[str, Any] | None = None  # its final stats after stop()
        self.self_calibration: Any | None = None  # pipeline/services/self_calibration.py, run by the supervisor
        self._supervise = supervise
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.RLock()  # supervision and stop never interleave
        self._generation = 0
        self._final_stats: list[dict[str, Any]] = []
        self.coldstart: Any | None = None  # pipeline.services.coldstart_stream.ColdStartPromoter (driver thread)
        self._warm_banks: list[Any] = []  # BankRefs a new inference actor loads before frames (read on start)

    @property
    def restarts(self) -> int:
        """Actors recreated by the supervisor, all roles together."""
        return sum(self.restarts_by_role.values())

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Pipeline:
        """Create the actors, wait until the model is loaded, start the ingest loops and the supervisor."""
        import ray

        from pipeline.services.coldstart_stream import ColdStartPromoter
        from pipeline.stream.monitor import MONITOR_NAME, start_monitor

        settings = self.settings
        coldstart = ColdStartPromoter.for_stream(settings, self.bootstrap_servers)  # classes with no bank (driver)
        init_ray(settings)
        self.monitor = start_monitor()
        from pipeline.stream.placement import create_placement_group, inference_placement_for

        # device, resources and spread of the inference actors over the cluster's nodes (pipeline/stream/placement.py)
        self._placement = inference_placement_for(settings, cluster_gpus=ray.cluster_resources().get("GPU", 0))
        self._placement_group = create_placement_group(self._placement)
        self.inference = [self._new_inference(index) for index in range(settings.inference_actors)]
        if settings.llm_verdicts:  # LLM verdicts: one low-priority actor fed by the sinks
            self.verdicts = self._new_verdicts(MONITOR_NAME)
        self.sinks = [self._new_sink() for _ in range(self.ingest_loops)]
        verdicts = [self.verdicts] if self.verdicts is not None else []
        try:
            ray.get([actor.ready.remote() for actor in self.inference + self.sinks + verdicts], timeout=300)
        except Exception as exc:
            self._kill_all()
            raise PipelineError(f"pipeline actors failed to start: {_root_cause(exc)}") from None
        self._warm_up(self.inference, wait=True)
        self.ingest = [self._start_ingest(index) for index in range(self.ingest_loops)]
        log.info(
            "pipeline started: %d ingest, %d inference, batch %d / %.3f s, %d in flight",
            self.ingest_loops, len(self.inference), settings.max_batch_size,
            settings.batch_wait_timeout_s, settings.max_inflight_batches,
        )
        if self._supervise:
            from pipeline.services.self_calibration import self_calibrator_for

            self.self_calibration = self_calibrator_for(settings)  # None when off
            self._supervisor = threading.Thread(target=self._supervise_loop, name="linesight-supervisor", daemon=True)
            self._supervisor.start()
        self.coldstart = coldstart.start()
        return self

    def _warm_up(self, actors: list[Any], *, wait: bool) -> None:
        """Load the active banks into ``actors`` and run their encoders once (best effort).

        Without it the first frames after a start or an actor's recreation waited for the bank files
        and the engine's first call: in `make bench`'s paced run they were stored up to 2.5 s after
        capture, against about 0.5 s once warm. On start (``wait=True``) the active banks are read
        from SQL; a recreated actor (``wait=False``, from the supervisor) gets the banks read then,
        without touching the database, and its warm-up is queued before the frames the ingest sends
        it, which wait behind it as they would have.
        """
        import ray

        if wait:
            from pipeline.stream.adapters import SqlBankLookup
            from storage.db import Database
            from storage.repository import Repository

            database = None
            try:
                database = Database(self.settings.database_url)
                self._warm_banks = [ref for ref in SqlBankLookup(Repository(database))().values() if ref.version > 0]
            except Exception as exc:  # noqa: BLE001 - the ingest loop reports a database that is away
                log.warning("warm-up skipped: the active banks could not be read: %s", exc)
                return
            finally:
                if database is not None:
                    database.dispose()
        refs = list(self._warm_banks)
        calls = [actor.warm_up.remote(refs) for actor in actors]
        if not wait:
            return
        try:
            loaded = ray.get(calls, timeout=120)
            log.info("inference actors warmed up: %s of %d active banks loaded", loaded, len(refs))
        except Exception as exc:  # noqa: BLE001 - scoring reports a real fault, the warm-up only saves time
            log.warning("warm-up of the inference actors did not finish: %s", _root_cause(exc))

    # --- actor factories -------------------------------------------------------------------------
    def _new_inference(self, index: int) -> Any:
        """Inference actor ``index``: its resources and node spread from the placement, its model from the factory."""
        import ray

        from model.factory import DetectorConfig
        from pipeline.services.coldstart_stream import ColdStartConfig
        from pipeline.stream.inference import InferenceWorker
        from pipeline.stream.placement import inference_actor_options

        settings = self.settings
        options = inference_actor_options(self._placement, index, self._placement_group)
        config = DetectorConfig.from_settings(settings, device=self._placement.device)
        return ray.remote(max_restarts=2)(InferenceWorker).options(**options).remote(
            config, settings.bank_cache_size, max_bank_rows=settings.max_bank_rows,
            cold_start=ColdStartConfig.from_settings(settings),
        )

    def _new_verdicts(self, monitor_name: str) -> Any:
        import ray

        from pipeline.stream.verdicts import VerdictWorker

        verdict_cls = ray.remote(num_cpus=VERDICT_CPUS, max_restarts=1)(VerdictWorker)
        return verdict_cls.remote(self.settings, monitor_name)  # by name: no handle among the arguments

    def _new_sink(self) -> Any:
        """A sink actor, spread over the nodes (recreated by the supervisor, not by Ray)."""
        import ray

        from pipeline.stream.placement import io_actor_options
        from pipeline.stream.sink import ResultSink, SinkConfig

        return ray.remote(ResultSink).options(**io_actor_options(SINK_CPUS, spread=True)).remote(
            SinkConfig.from_settings(self.settings), self.bootstrap_servers, self.settings.api_base_url, self.verdicts
        )

    def _start_ingest(self, index: int) -> Any:
        """Ingest loop ``index``, spread over the nodes (one Kafka consumer of the group)."""
        import ray

        from pipeline.stream.placement import io_actor_options

        self._generation += 1  # a unique source name per loop generation: the monitor's totals never reset
        share = (index, self.ingest_loops) if self.settings.partition_assignment == "static" else None
        service = ray.remote(IngestService).options(**io_actor_options(INGEST_CPUS, spread=True)).remote(
            self.settings, self.bootstrap_servers, self.inference, self.sinks[index],
            f"ingest-{index}#{self._generation}", self.monitor, share,
        )
        ray.get(service.start.remote())
        return service

    # --- supervision -------------------------------------------------------------------------------
    def _supervise_loop(self) -> None:
        while not self._stopping.wait(self.settings.supervise_interval_s):
            try:
                self.watch()
            except Exception as exc:  # never let the supervisor die; it tries again next interval
                log.warning("supervision round failed: %s", _root_cause(exc))
            if self.self_calibration is not None:
                self.self_calibration.poke()  # a round in its own thread, one at a time

    def _count_restart(self, role: str) -> None:
        self.restarts_by_role[role] += 1
        if self.monitor is not None:
            self.monitor.count_restart.remote(role)

    def watch(self) -> int:
        """Recreate every actor Ray gave up on (inference, sink, verdicts, ingest); returns how many.

        A new ingest loop resumes from the last committed offsets: nothing is lost, and frames that
        were in flight are replayed and deduplicated by the sink.
        """
        with self._lock:
            if self._stopping.is_set() or not self.ingest:
                return 0
            before = self.restarts
            self._replace_dead_inference()
            self._replace_dead_verdicts()
            self._replace_dead_sinks()
            self._restart_dead_ingest()
            return self.restarts - before

    def _replace_dead_inference(self) -> None:
        dead = [i for i, alive in enumerate(_alive(self.inference)) if not alive]
        if not dead:
            return
        for slot in dead:
            log.warning("inference actor %d is dead (Ray gave up on it); recreating it", slot)
            _kill(self.inference[slot])
            self.inference[slot] = self._new_inference(slot)
            self._warm_up([self.inference[slot]], wait=False)
            self._count_restart("inference")
        for service in self.ingest:
            service.set_inference.remote(list(self.inference))

    def _replace_dead_verdicts(self) -> None:
        from pipeline.stream.monitor import MONITOR_NAME

        if self.verdicts is None or _alive([self.verdicts])[0]:
            return
        log.warning("the verdict actor is dead; recreating it")
        self.verdicts = self._new_verdicts(MONITOR_NAME)
        self._count_restart("verdicts")
        for sink in self.sinks:
            sink.set_verdicts.remote(self.verdicts)

    def _replace_dead_sinks(self) -> None:
        for index, alive in enumerate(_alive(self.sinks)):
            if alive:
                continue
            log.warning("sink-%d is dead; recreating it", index)
            _kill(self.sinks[index])
            self.sinks[index] = self._new_sink()
            self._count_restart("sink")
            if index < len(self.ingest):
                self.ingest[index].set_sink.remote(self.sinks[index])

    def _restart_dead_ingest(self) -> None:
        import ray

        for index, service in enumerate(self.ingest):
            try:
                state = ray.get(service.stats.remote(), timeout=30)
                alive = state["running"]
            except Exception:
                alive, state = False, {}
            if alive:
                continue
            log.warning("ingest-%d is down (%s); restarting it", index, state.get("error", "actor died"))
            _kill(service)
            self.ingest[index] = self._start_ingest(index)
            self._count_restart("ingest")

    def kill_ingest(self, index: int = 0) -> None:
        """Kill an ingest loop's process without a drain (crash drills and tests)."""
        import ray

        ray.kill(self.ingest[index], no_restart=True)

    # --- state ------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Aggregated counters of all ingest loops (dead loops report ``running=False``)."""
        import ray

        per_loop = []
        for service in list(self.ingest):
            try:
                per_loop.append(ray.get(service.stats.remote(), timeout=30))
            except Exception as exc:
                per_loop.append({"running": False, "error": _root_cause(exc)})
        return _aggregate(per_loop + self._final_stats, self.restarts_by_role)

    def wait_until_consuming(self, timeout_s: float = 60.0) -> None:
        """Block until every ingest loop holds partitions (its share at once; with ``partition_assignment=group``
        after the group join, about half of ``session_timeout_ms``).

        Frames published before that wait in Kafka (nothing is lost); waiting keeps the start-up out of
        latency measurements.
        """
        import ray

        def joined() -> bool:
            states = ray.get([service.stats.remote() for service in self.ingest], timeout=30)
            return all(state["assigned_partitions"] > 0 for state in states)

        if not wait_for(joined, timeout_s):
            raise PipelineError(f"the ingest loops did not get partitions of {self.settings.frames_topic!r} "
                                f"(consumer group {self.settings.consumer_group!r}) within {timeout_s} s")

    def stop(self, timeout_s: float = 120.0) -> dict[str, Any]:
        """Stop supervising, drain and stop the ingest loops, then the sinks and inference actors."""
        import ray

        self._stopping.set()
        if self.coldstart is not None:
            self.coldstart.stop()
        if self._supervisor is not None:
            self._supervisor.join(timeout=60)
        with self._lock:
            final = []
            for service in self.ingest:
                try:
                    final.append(ray.get(service.stop.remote(timeout_s), timeout=timeout_s + 10))
                except Exception as exc:
                    log.warning("an ingest loop did not stop cleanly: %s", _root_cause(exc))
            for sink in self.sinks:
                try:
                    ray.get(sink.close.remote(), timeout=30)
                except Exception as exc:
                    log.warning("a sink did not close cleanly: %s", _root_cause(exc))
            if final or self.ingest:
                self._final_stats = final
            self.ingest = []
            if self.verdicts is not None:  # LLM verdicts: drain the bounded backlog, then stop
                drain_s = self.settings.verdict_drain_s
                try:
                    self.verdict_stats = ray.get(self.verdicts.close.remote(drain_s), timeout=drain_s + 60)
                except Exception as exc:
                    log.warning("the verdict actor did not close cleanly: %s", _root_cause(exc))
            self._kill_all()
            total = _aggregate(self._final_stats, self.restarts_by_role)
            if self.verdict_stats is not None:
                total["verdicts"] = self.verdict_stats
            return total

    def _kill_all(self) -> None:
        extra = [a for a in (self.monitor, self.verdicts) if a is not None]
        for actor in [*self.inference, *self.sinks, *self.ingest, *extra]:
            _kill(actor)
        self.inference, self.sinks, self.monitor, self.verdicts = [], [], None, None
        group, self._placement_group = getattr(self, "_placement_group", None), None
        if group is not None:
            from ray.util import remove_placement_group

            try:
                remove_placement_group(group)
            except Exception as exc:  # the cluster may be gone already
                log.warning("could not remove the inference placement group: %s", exc)


def _kill(actor: Any) -> None:
    import ray

    try:
        ray.kill(actor)
    except Exception:
        pass


def _alive(actors: list[Any], timeout_s: float = 2.0) -> list[bool]:
    """Ping each actor's ``ready``; only an actor Ray declares dead is False (a busy one may not answer in time)."""
    import ray

    refs = [actor.ready.remote() for actor in actors]
    if not refs:
        return []
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    done = set(ready)
    out = []
    for ref in refs:
        if ref not in done:
            out.append(True)  # busy (its calls are queued behind a batch) or restarting: not given up on
            continue
        try:
            ray.get(ref)
            out.append(True)
        except ray.exceptions.ActorUnavailableError:
            out.append(True)  # Ray is restarting it (e.g. elsewhere after its node was lost): not given up on
        except ray.exceptions.RayActorError:
            out.append(False)
        except Exception:
            out.append(True)
    return out


def wait_for(predicate, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def _aggregate(per_loop: list[dict[str, Any]], restarts_by_role: dict[str, int]) -> dict[str, Any]:
    """The stream's totals: the loops' counters merged, their latencies, faults, running loops, restarts."""
    total: dict[str, Any] = StreamCounters.total([StreamCounters.from_dict(s) for s in per_loop]).as_dict()
    faults: dict[str, str] = {}
    latencies: list[float] = []
    for s in per_loop:
        latencies.extend(s.get("latencies_ms", []))
        if s.get("running"):
            faults.update(s.get("faults_active") or {})
    total.update(
        latencies_ms=latencies,
        faults_active=faults,
        running=sum(1 for s in per_loop if s.get("running")),
        errors=[s["error"] for s in per_loop if s.get("error")],
        restarts=sum(restarts_by_role.values()),
        restarts_by_role=dict(restarts_by_role),
    )
    return total


def _root_cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    return f"{type(cause or exc).__name__}: {cause or exc}"
