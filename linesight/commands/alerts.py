"""``linesight alerts``: tail the alerts topic, one readable line (or JSON object) per alert."""

from __future__ import annotations

import argparse
import logging
import sys

from linesight.commands._common import positive_float, positive_int, stop_on_signals


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alerts",
        help="print alerts as they are published (one line each, or JSON with --json)",
        description=(
            "Tail LINESIGHT_ALERTS_TOPIC and print one line per flagged frame: time, line/camera, class and bank "
            "version, score > threshold, where the defect is, the verdict and a link when LINESIGHT_API_BASE_URL "
            "is set. Stops after --count alerts, after --timeout-s, or on Ctrl-C."
        ),
    )
    parser.add_argument("--count", type=positive_int, default=None, help="stop after this many alerts")
    parser.add_argument("--json", action="store_true", help="print each alert as one JSON object per line")
    parser.add_argument(
        "--from-beginning", action="store_true", help="print the alerts already on the topic too (default: new only)"
    )
    parser.add_argument("--timeout-s", type=positive_float, default=None, help="stop after this many seconds")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from connectors.alerts import AlertTail, alert_to_json_line, format_alert
    from connectors.kafka import ensure_topics
    from connectors.tansu import broker_for
    from linesight.settings import load_settings

    if not getattr(args, "verbose", False):
        logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = load_settings()
    if not settings.kafka_bootstrap_servers:
        print(f"linesight: note: LINESIGHT_KAFKA_BOOTSTRAP_SERVERS is empty; tailing the embedded broker of "
              f"{settings.data_dir} (the one `run`/`serve`/`demo` use there; `linesight broker status` shows it)",
              file=sys.stderr)
    shown = 0
    with broker_for(settings) as bootstrap:
        ensure_topics(
            bootstrap, {settings.alerts_topic: 1}, replication_factor=settings.kafka_replication_factor,
            configs_by_topic=settings.topic_configs, security=settings.kafka_security,
        )
        with AlertTail(
            bootstrap, settings.alerts_topic, from_beginning=args.from_beginning, security=settings.kafka_security
        ) as tail, stop_on_signals() as stop:
            for alert in tail.alerts(count=args.count, timeout_s=args.timeout_s, stop=stop):
                print(alert_to_json_line(alert) if args.json else format_alert(alert), flush=True)
                shown += 1
    print(f"{shown} alert(s)", file=sys.stderr)
    return 0
