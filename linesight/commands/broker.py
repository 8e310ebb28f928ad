"""``linesight broker start|stop|status``: the embedded Tansu broker of the data folder (demos and tests)."""

from __future__ import annotations

import argparse
import json
import sys

from linesight.commands._common import tcp_port


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="start, stop or show the embedded Kafka broker shared by the commands of one data folder",
        description=(
            "With no LINESIGHT_KAFKA_BOOTSTRAP_SERVERS, `run`, `serve`, `camera`, `alerts` and `demo` share one "
            "embedded Tansu broker per LINESIGHT_DATA_DIR, recorded in <data_dir>/broker.json: the first command "
            "starts it, the others reuse it, the last one to leave stops it. `broker start` starts it (or keeps "
            "the running one) until `broker stop`, so frames published by `camera` wait for `run`. The broker is "
            "memory-only: stopping it loses every frame on it. It is for demos and tests; production uses Kafka."
        ),
        epilog=(
            "examples:\n"
            "  linesight broker start && linesight camera --count 200 && linesight run --max-seconds 60\n"
            "  linesight broker status --json\n"
            "  linesight broker stop"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("start", help="start the data folder's broker (or keep the running one) until stop")
    start.add_argument("--port", type=tcp_port, default=None, help="TCP port of a newly started broker (default: free)")
    start.set_defaults(handler=handle_start)
    stop = actions.add_parser("stop", help="stop the data folder's broker, whoever uses it (its frames are lost)")
    stop.set_defaults(handler=handle_stop)
    status = actions.add_parser("status", help="show the data folder's broker; exit 0 when it runs, 1 when not")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=handle_status)


def _settings():
    from linesight.settings import load_settings

    return load_settings()


def _external_note(settings) -> None:
    if settings.kafka_bootstrap_servers:
        print(f"linesight: note: LINESIGHT_KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers} is set: "
              "commands use that Kafka, not the embedded broker", file=sys.stderr)


def handle_start(args: argparse.Namespace) -> int:
    from connectors.shared_broker import BROKER_FILE, start_broker
    from linesight.errors import ConfigError

    settings = _settings()
    if settings.kafka_bootstrap_servers:
        raise ConfigError(
            f"LINESIGHT_KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers!r} is set: commands use that "
            "Kafka; unset it to use the embedded broker"
        )
    record, started = start_broker(settings.data_dir, port=args.port)
    verb = "started" if started else "already running"
    print(f"embedded broker {verb} on {record.bootstrap_servers} (pid {record.pid}, "
          f"{settings.data_dir.resolve() / BROKER_FILE}); memory only: `linesight broker stop` loses its frames")
    return 0


def handle_stop(args: argparse.Namespace) -> int:
    from connectors.shared_broker import stop_broker

    settings = _settings()
    _external_note(settings)
    status = stop_broker(settings.data_dir)
    if status.record is None:
        print(f"no embedded broker recorded in {status.data_dir}")
    elif status.state == "stale":
        print(f"removed a stale record ({status.detail})")
    else:
        users = len(status.live_clients)
        print(f"stopped the embedded broker on {status.record.bootstrap_servers} (pid {status.record.pid})"
              + (f"; {users} command(s) were still using it" if users else ""))
    return 0


def handle_status(args: argparse.Namespace) -> int:
    from connectors.shared_broker import broker_status

    settings = _settings()
    _external_note(settings)
    status = broker_status(settings.data_dir)
    record = status.record
    if args.json:
        print(json.dumps({
            "state": status.state,
            "data_dir": str(status.data_dir),
            "bootstrap_servers": record.bootstrap_servers if record else None,
            "pid": record.pid if record else None,
            "started_at": record.started_at if record else None,
            "kept_until_stop": record.keep if record else None,
            "clients": list(status.live_clients),
            "log_path": record.log_path if record else None,
            "detail": status.detail,
        }))
    elif record is None or status.state != "running":
        print(f"embedded broker: {status.state} ({status.detail})")
    else:
        owner = "kept until `linesight broker stop`" if record.keep else "stopped when its last user exits"
        print(f"embedded broker: running on {record.bootstrap_servers} (pid {record.pid}, since {record.started_at}); "
              f"{len(status.live_clients)} command(s) using it; {owner}; log {record.log_path}")
    return 0 if status.state == "running" else 1
