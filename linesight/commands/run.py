"""``linesight run``: the inspection stream against the configured Kafka, SQL and Ray."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path

from linesight.commands._common import positive_float, positive_int, stop_on_signals, tcp_port

log = logging.getLogger("linesight.run")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the inspection stream (Kafka -> Ray -> SQL + alerts) until Ctrl-C / SIGTERM",
        description=(
            "Consume frames from LINESIGHT_FRAMES_TOPIC, score them with the active bank of their class, store "
            "every result in LINESIGHT_DATABASE_URL and publish alerts. With no LINESIGHT_KAFKA_BOOTSTRAP_SERVERS "
            "the embedded Tansu broker is started. Ctrl-C or SIGTERM drains in-flight frames, commits and exits."
        ),
    )
    parser.add_argument("--ingest-loops", type=positive_int, default=1, help="Kafka consumers (default 1)")
    parser.add_argument("--max-seconds", type=positive_float, default=None, help="stop after this long")
    parser.add_argument("--report-every-s", type=positive_float, default=10.0, help="log counters this often")
    parser.add_argument("--metrics-port", type=tcp_port, default=None,
                        help="serve Prometheus /metrics on this port (default LINESIGHT_METRICS_PORT; empty = off)")

    parser.add_argument(
        "--health-file", type=Path, default=None,
        help="rewrite this JSON file with the counters every --report-every-s (a container healthcheck checks its age)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from connectors.tansu import broker_for
    from linesight.settings import load_settings
    from pipeline.stream.job import Pipeline
    from pipeline.stream.prepare import prepare

    settings = load_settings()
    started = time.monotonic()
    metrics_port = args.metrics_port or settings.metrics_port
    with broker_for(settings) as bootstrap:
        prepare(settings, bootstrap)
        log.info("brokers %s, database %s", bootstrap, settings.database_url)
        # the handlers go in after ray.init (Pipeline starts it; Ray installs its own) and stay until
        # the pipeline has drained: the stack closes after the pipeline's own exit
        with contextlib.ExitStack() as signals, Pipeline(settings, bootstrap, ingest_loops=args.ingest_loops) as pipeline:
            stop = signals.enter_context(stop_on_signals())
            metrics_server = _serve_metrics(settings, metrics_port) if metrics_port else None
            while not stop.wait(args.report_every_s):
                pipeline.watch()
                stats = pipeline.stats()
                log.info(
                    "stored %d, dead-lettered %d, alerts %d, redelivered %d, restarts %d",
                    stats["stored"], stats["dead_lettered"], stats["alerts_sent"], stats["redelivered"],
                    stats["restarts"],
                )
                if args.health_file is not None:
                    _heartbeat(args.health_file, stats)
                if args.max_seconds and time.monotonic() - started >= args.max_seconds:
                    break
            log.info("stopping: draining in-flight frames")
            if metrics_server is not None:
                metrics_server.shutdown()
    return 0


def _serve_metrics(settings, port: int):
    """Prometheus /metrics of this stream (the monitor actor's counters, SQL counters by line and class)."""
    from linesight.api.context import ray_monitor_snapshot
    from linesight.api.metrics import build_registry, serve_metrics
    from linesight.data_folder import open_repository

    repository = open_repository(settings)  # prepare() migrated it
    server = serve_metrics(build_registry(ray_monitor_snapshot, lambda: repository), port)
    log.info("Prometheus metrics at http://0.0.0.0:%d/metrics", port)
    return server

def _heartbeat(path: Path, stats: dict) -> None:
    """Replace ``path`` with the counters and the time (atomic rename: a reader never sees half a file)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"at": time.time(), **{k: v for k, v in stats.items() if isinstance(v, int)}}))
    temporary.replace(path)
