"""Argument types shared by command modules (they raise ``argparse.ArgumentTypeError`` naming the value),
and :func:`stop_on_signals` for commands that loop until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM for the ``with`` block (the previous handlers come back after).

    A loop that polls Kafka must not rely on ``KeyboardInterrupt``: kafka-python 3 runs its network
    tasks in the caller's thread and logs-and-drops any exception raised inside one, Ctrl-C included
    (seen: ``linesight alerts`` kept tailing 60 s after SIGINT on a busy host). The loop checks the
    event between polls instead.
    """
    stop = threading.Event()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def number_type(cast: Callable[[str], float], accept: Callable[[float], bool], expected: str, name: str):
    """An argparse type: ``cast(text)`` that ``accept`` s, else ``ArgumentTypeError`` saying ``expected``.

    >>> number_type(int, lambda v: v >= 1, "a whole number >= 1", "n")("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: expected a whole number >= 1, got 0
    """

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = f"argparse type: {expected}."
    return parse


positive_int = number_type(int, lambda v: v >= 1, "a whole number >= 1", "positive_int")
tcp_port = number_type(int, lambda v: 1 <= v <= 65535, "a TCP port 1..65535", "tcp_port")
positive_float = number_type(float, lambda v: v > 0, "a number > 0", "positive_float")
fraction = number_type(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]", "fraction")
share = number_type(float, lambda v: 0.0 < v <= 1.0, "a share in (0, 1]", "share")


def existing_dir(text: str) -> Path:
    """argparse type: a folder that exists."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text!r}")
    return path


def existing_file(text: str) -> Path:
    """argparse type: a file that exists."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return path


_DURATION_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def duration_s(text: str) -> float:
    """argparse type: a duration like ``90s``, ``30m``, ``2h``, ``1.5d``, ``2w`` in seconds (> 0).

    >>> duration_s("2h")
    7200.0
    """
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a duration > 0 like 90s, 30m, 2h, 7d or 2w, got {text!r}"
        )
    return float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]


def time_or_ago(text: str):
    """argparse type: an ISO 8601 time (UTC when it has no zone) or a duration ago (``2h`` = two hours ago).

    >>> time_or_ago("2026-11-21T08:00:00").isoformat()
    '2026-11-21T08:00:00+00:00'
    """
    from datetime import UTC, datetime, timedelta

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.now(UTC) - timedelta(seconds=duration_s(text))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected an ISO 8601 time like 2026-11-21T08:00:00+00:00 or a time ago like 30m, 2h, 7d; got {text!r}"
            ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value

def class_name(text: str) -> str:
    """argparse type: a product-class name (the rule of :mod:`model.names`)."""
    from model.exceptions import ClassNameError
    from model.names import check_class_name

    try:
        return check_class_name(text)
    except ClassNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
