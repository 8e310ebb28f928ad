"""``stop_on_signals``: Ctrl-C and SIGTERM set an event instead of raising inside a Kafka poll.

Each case runs in its own Python process: a signal sent to the test process itself would also reach
whatever earlier tests left behind in it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = """
import signal
from linesight.commands._common import stop_on_signals
before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
with stop_on_signals() as stop:
    print("ready", flush=True)
    print("stopped" if stop.wait(30) else "timed out", flush=True)
print("restored" if (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before else "changed")
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_sets_the_event_and_the_old_handlers_come_back(signum):
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.split() == ["stopped", "restored"]
