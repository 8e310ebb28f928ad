"""The ``linesight`` command line.

Each sub-command lives in ``linesight/commands/<name>.py`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``handler=fn`` where
``fn(args) -> int`` is the exit code. Errors derived from :class:`LinesightError` print one line
(``linesight: error: ...``) and exit 2; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import linesight.commands
from linesight.errors import LinesightError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command module's sub-parser registered."""
    parser = argparse.ArgumentParser(
        prog="linesight",
        description=(
            "Streaming industrial inspection: camera frames from Kafka are scored for anomalies "
            "(few-shot memory bank + anomaly map, no manual threshold), stored in SQL, and alerted."
        ),
        epilog="Settings come from LINESIGHT_* environment variables; see README.md.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(linesight.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"linesight.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``linesight`` script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:  # kafka-python logs every group join and connection at INFO
        logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except LinesightError as exc:
        print(f"linesight: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("linesight: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
