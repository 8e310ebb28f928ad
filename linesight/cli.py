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
import os
import pkgutil
import sys
from collections.abc import Sequence

import linesight.commands
from linesight.errors import LinesightError

__all__ = ["main", "build_parser", "configure_logging", "OWN_LOGGERS"]

OWN_LOGGERS = ("linesight", "pipeline", "connectors", "storage", "training", "model")
# libraries that log routine steps at INFO: alembic (7-12 lines per migration check), kafka-python
# (every connection and group join), Ray Serve; quiet unless -v
_QUIET_LOGGERS = ("alembic", "kafka", "ray", "ray.serve", "httpx", "uvicorn.access")


class _CliHandler(logging.StreamHandler):
    """The one stderr handler ``main`` installs (replaced, not added again, on every call)."""


def configure_logging(verbosity: int) -> None:
    """Quiet by default: warnings from libraries, INFO from linesight's own packages.

    ``verbosity`` 1 (``-v``): libraries at INFO (alembic, kafka-python), linesight at DEBUG;
    2 (``-vv``): everything at DEBUG. Log lines go to stderr (the stream of the moment, so a
    captured stderr sees them).
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _CliHandler)]:
        root.removeHandler(handler)
    handler = _CliHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    root.addHandler(handler)
    library_level = (logging.WARNING, logging.INFO)[min(verbosity, 1)] if verbosity < 2 else logging.DEBUG
    root.setLevel(library_level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity else logging.INFO)
    if not verbosity:  # transformers' weight-loading bars (read when transformers is imported; -v shows them)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


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
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="more log lines: -v adds every library's INFO (alembic, kafka) and linesight's DEBUG; -vv all DEBUG",
    )
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
    configure_logging(args.verbose)
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
