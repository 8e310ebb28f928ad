"""``stop_on_signals``: Ctrl-C and SIGTERM set an event instead of raising inside a Kafka poll."""

from __future__ import annotations

import os
import signal

from linesight.commands._common import stop_on_signals


def test_sigint_and_sigterm_set_the_event_and_the_old_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for signum in (signal.SIGINT, signal.SIGTERM):
        with stop_on_signals() as stop:
            assert not stop.is_set()
            os.kill(os.getpid(), signum)  # no KeyboardInterrupt, no exit
            assert stop.wait(5), f"signal {signum} did not set the event"
    assert {s: signal.getsignal(s) for s in before} == before
