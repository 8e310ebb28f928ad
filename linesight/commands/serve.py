"""``linesight serve``: the HTTP API and dashboard on Ray Serve, plus (by default) the inspection stream."""

from __future__ import annotations

import argparse
import contextlib
import logging

from linesight.commands._common import positive_float, stop_on_signals, tcp_port

log = logging.getLogger("linesight.serve")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the HTTP API and dashboard (Ray Serve) and run the inspection stream until Ctrl-C / SIGTERM",
        description=(
            "Starts (or connects to, with LINESIGHT_RAY_ADDRESS) Ray, deploys the API on Ray Serve (dashboard at /, "
            "OpenAPI docs at /docs, Prometheus metrics at /metrics, health at /healthz) and, unless --no-stream, "
            "the inspection stream (Kafka -> Ray -> SQL + alerts). With no LINESIGHT_KAFKA_BOOTSTRAP_SERVERS the "
            "embedded Tansu broker is started. Write endpoints need 'Authorization: Bearer <LINESIGHT_API_TOKEN>'; "
            "when no token is set a random one is generated and printed once. Ctrl-C or SIGTERM drains in-flight "
            "frames, commits and exits."
        ),
        epilog="example: LINESIGHT_API_TOKEN=s3cret linesight serve --host 0.0.0.0 --port 8000",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 = all)")
    parser.add_argument("--port", type=tcp_port, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--no-stream", action="store_true",
                        help="serve the API only (history, banks, inspect); no Kafka consumer runs")
    parser.add_argument("--watch-every-s", type=positive_float, default=10.0,
                        help="how often the stream supervisor restarts dead ingest loops (default 10)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from linesight.api.auth import resolve_api_token
    from linesight.api.deployment import start_serve, stop_serve
    from linesight.settings import load_settings
    from pipeline.stream.job import init_ray

    settings = load_settings()
    token, generated = resolve_api_token(settings.api_token)
    init_ray(settings)
    # handlers after ray.init, which installs its own SIGTERM handler; kept until the drain is over
    with stop_on_signals() as stop, contextlib.ExitStack() as stack:
        bootstrap = _prepare(settings, stack, stream=not args.no_stream)
        stack.callback(stop_serve)  # exits run in reverse: the stream drains first, then the API stops
        pipeline = None
        if not args.no_stream:
            from pipeline.stream.job import Pipeline

            pipeline = stack.enter_context(Pipeline(settings, bootstrap))  # stopped (drained) on exit
        url = start_serve(settings, host=args.host, port=args.port, token=token, bootstrap_servers=bootstrap,
                          expect_stream=pipeline is not None)
        if generated:
            print(f"linesight: no LINESIGHT_API_TOKEN set; write endpoints need this token: {token}", flush=True)
        print(f"linesight: dashboard {url}/  API docs {url}/docs  (Ctrl-C to stop)", flush=True)
        while not stop.wait(args.watch_every_s):
            if pipeline is not None:
                pipeline.watch()
        log.info("stopping: draining the stream, then the API")
    return 0


def _prepare(settings, stack: contextlib.ExitStack, *, stream: bool) -> str | None:
    """Topics and schema; the broker's servers (an embedded one is started for a stream without Kafka)."""
    from storage.db import Database

    if not stream:
        database = Database(settings.database_url)
        try:
            database.migrate()
        finally:
            database.dispose()
        return settings.kafka_bootstrap_servers
    from connectors.tansu import broker_for
    from pipeline.stream.prepare import prepare

    bootstrap = stack.enter_context(broker_for(settings))
    prepare(settings, bootstrap)
    log.info("brokers %s, database %s", bootstrap, settings.database_url)
    return bootstrap
