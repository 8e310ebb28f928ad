"""The ingest loop as a Ray actor: builds the Kafka, SQL and Ray adapters and runs the loop in a thread.

:class:`IngestService` keeps ``stats``/``stop`` callable while the loop runs, and takes the actors
the supervisor recreated (:meth:`IngestService.set_inference`, :meth:`IngestService.set_sink`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from pipeline.stream.counters import StreamCounters
from pipeline.stream.dispatch import RayDispatcher
from pipeline.stream.ingest import IngestLoop
from pipeline.stream.ports import IngestConfig
from pipeline.stream.prepare import StreamTopicsConfig

__all__ = ["IngestService", "IngestSettings"]

log = logging.getLogger(__name__)


class IngestSettings(StreamTopicsConfig, Protocol):
    """What an ingest actor reads (``linesight.settings.Settings`` has it all): its Kafka clients' settings and
    the topics (:class:`~pipeline.stream.prepare.StreamTopicsConfig`) here, the loop's own in
    :meth:`pipeline.stream.ports.IngestConfig.from_settings`."""

    consumer_group: str
    max_batch_size: int
    session_timeout_ms: int
    fetch_max_wait_ms: int
    max_frame_bytes: int

    @property
    def zero_shot_class_names(self) -> tuple[str, ...]: ...

    @property
    def coldstart_class_names(self) -> tuple[str, ...]: ...


class IngestService:
    """Ray actor wrapper of one :class:`~pipeline.stream.ingest.IngestLoop` (one Kafka consumer).

    ``share=(index, loops)``: it reads the frames partitions ``p % loops == index``
    (:func:`connectors.source.partitions_of_share`); None: those the consumer group gives it.
    """

    def __init__(
        self, settings: IngestSettings, bootstrap_servers: str, inference: list[Any], sink: Any, name: str,
        monitor: Any | None = None, share: tuple[int, int] | None = None,
    ) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.name = name
        self.monitor = monitor
        self.share = share  # (index, loops): the frames partitions it reads; None = the group coordinator's
        self.dispatcher = RayDispatcher(inference, sink)
        self.loop: IngestLoop | None = None
        self.dead_letters: Any | None = None  # connectors.dead_letter.DeadLetterSink, once built
        self.thread: threading.Thread | None = None
        self.error: str | None = None
        self._stop_asked = threading.Event()

    def start(self) -> bool:
        """Start the loop thread (returns at once; Kafka clients are built in the thread)."""
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()
        return True

    def _build(self) -> IngestLoop:
        from connectors.dead_letter import DeadLetterSink
        from connectors.source import KafkaFrameSource
        from pipeline.stream.adapters import (
            FLUSH_TIMEOUT_S,
            KafkaBrokerProbe,
            KafkaSourcePort,
            SqlBankLookup,
            SqlDeadLetterLedger,
            stream_producer_factory,
        )
        from pipeline.stream.prepare import ensure_stream_topics
        from storage.db import Database
        from storage.repository import Repository

        settings, servers = self.settings, self.bootstrap_servers

        def new_source() -> KafkaFrameSource:
            return KafkaFrameSource(
                servers, settings.frames_topic, settings.consumer_group, client_id=self.name,
                max_poll_records=settings.max_batch_size, session_timeout_ms=settings.session_timeout_ms,
                fetch_max_wait_ms=settings.fetch_max_wait_ms, security=settings.kafka_security, share=self.share,
            )

        def reconnect() -> KafkaFrameSource:  # a memory-only broker comes back empty: topics first
            ensure_stream_topics(settings, servers)
            return new_source()

        new_producer = stream_producer_factory(servers, max_request_size=settings.max_frame_bytes * 2,
                                                security=settings.kafka_security)
        self.dead_letters = DeadLetterSink(new_producer(), settings.dead_letter_topic, renew=new_producer,
                                           flush_timeout_s=FLUSH_TIMEOUT_S)
        repository = Repository(Database(settings.database_url))
        monitor = self.monitor

        def report(name: str, state: dict[str, Any], latencies: list[float], running: bool) -> None:
            if monitor is not None:
                monitor.report.remote(name, state, latencies, running)  # fire and forget

        return IngestLoop(
            IngestConfig.from_settings(settings),
            KafkaSourcePort(new_source(), probe=KafkaBrokerProbe(servers, security=settings.kafka_security),
                            reconnect=reconnect),
            self.dead_letters, SqlBankLookup(repository, settings.zero_shot_class_names, settings.coldstart_class_names),
            self.dispatcher,
            name=self.name, report=report, ledger=SqlDeadLetterLedger(repository),
        )

    def _run(self) -> None:
        try:
            self.loop = self._build()
            if self._stop_asked.is_set():
                self.loop.stop()
            self.loop.run()
        except Exception as exc:  # reported through stats(); the supervisor restarts the loop
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("%s: ingest loop failed", self.name)
        finally:
            producer = self.dead_letters.producer if self.dead_letters is not None else None
            if producer is not None:  # the current one (a failed flush replaces it)
                producer.close(timeout=5)

    def set_inference(self, actors: list[Any]) -> bool:
        """Dispatch to these inference actors from now on (the supervisor replaced a dead one)."""
        self.dispatcher.set_inference(actors)
        return True

    def set_sink(self, sink: Any) -> bool:
        """Write through this sink actor from now on (the supervisor replaced a dead one)."""
        self.dispatcher.set_sink(sink)
        return True

    def stats(self) -> dict[str, Any]:
        """Counters, latencies, ``faults_active``, plus ``running`` and ``error``."""
        out = self.loop.state() if self.loop is not None else {**StreamCounters().as_dict(), "latencies_ms": []}
        out["running"] = bool(self.thread and self.thread.is_alive())
        out["error"] = self.error
        return out

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Stop polling, drain in-flight batches, commit, close; returns the final stats."""
        self._stop_asked.set()
        if self.loop is not None:
            self.loop.stop()
        if self.thread is not None:
            self.thread.join(timeout_s)
        return self.stats()
