"""The ingest loop as a Ray actor: builds the Kafka, SQL and Ray adapters and runs the loop in a thread.

:class:`IngestService` keeps ``stats``/``stop`` callable while the loop runs, and takes the actors
the supervisor recreated (:meth:`IngestService.set_inference`, :meth:`IngestService.set_sink`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from linesight.settings import Settings
from pipeline.counters import StreamCounters
from pipeline.dispatch import RayDispatcher
from pipeline.ingest import IngestLoop
from pipeline.ports import IngestConfig

__all__ = ["IngestService"]

log = logging.getLogger(__name__)


class IngestService:
    """Ray actor wrapper of one :class:`~pipeline.ingest.IngestLoop` (one Kafka consumer)."""

    def __init__(
        self, settings: Settings, bootstrap_servers: str, inference: list[Any], sink: Any, name: str,
        monitor: Any | None = None,
    ) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.name = name
        self.monitor = monitor
        self.dispatcher = RayDispatcher(inference, sink)
        self.loop: IngestLoop | None = None
        self.thread: threading.Thread | None = None
        self.error: str | None = None
        self._stop_asked = threading.Event()

    def start(self) -> bool:
        """Start the loop thread (returns at once; Kafka clients are built in the thread)."""
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()
        return True

    def _build(self) -> tuple[IngestLoop, Any]:
        from connectors.dead_letter import DeadLetterSink
        from connectors.kafka import make_producer
        from connectors.source import KafkaFrameSource
        from pipeline.adapters import KafkaSourcePort, SqlBankLookup
        from storage.db import Database
        from storage.repository import Repository

        settings = self.settings
        source = KafkaFrameSource(
            self.bootstrap_servers, settings.frames_topic, settings.consumer_group, client_id=self.name,
            max_poll_records=settings.max_batch_size, session_timeout_ms=settings.session_timeout_ms,
            security=settings.kafka_security,
        )
        producer = make_producer(
            self.bootstrap_servers, max_request_size=settings.max_frame_bytes * 2, security=settings.kafka_security
        )
        banks = SqlBankLookup(Repository(Database(settings.database_url)), settings.zero_shot_class_names,
                              settings.coldstart_class_names)
        monitor = self.monitor

        def report(name: str, state: dict[str, Any], latencies: list[float], running: bool) -> None:
            if monitor is not None:
                monitor.report.remote(name, state, latencies, running)  # fire and forget

        loop = IngestLoop(
            IngestConfig.from_settings(settings), KafkaSourcePort(source),
            DeadLetterSink(producer, settings.dead_letter_topic), banks, self.dispatcher, name=self.name,
            report=report,
        )
        return loop, producer

    def _run(self) -> None:
        producer = None
        try:
            self.loop, producer = self._build()
            if self._stop_asked.is_set():
                self.loop.stop()
            self.loop.run()
        except Exception as exc:  # reported through stats(); the supervisor restarts the loop
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("%s: ingest loop failed", self.name)
        finally:
            if producer is not None:
                producer.close()

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
