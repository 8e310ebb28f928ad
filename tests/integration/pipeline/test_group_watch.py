"""A consumer killed in a group on the real (embedded Tansu) broker: its partitions are left without an
owner, and the supervisor's group watch (pipeline/stream/group_watch.py) makes the group rebalance.

Three consumers share 6 partitions; one runs in a child process that is SIGKILLed (a lost ingest loop)
and a replacement joins 2 s later, before the dead member's session expired, as Ray's restart does. Tansu
0.6 then assigns partitions to the dead member, drops it when its session expires and tells no one:
those partitions stay unowned. The watch, fed with each consumer's partitions as the ingest loops
report them, names one consumer to rejoin as a new member; afterwards every partition has an owner.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest

from connectors.kafka import ensure_topics
from connectors.source import KafkaFrameSource
from pipeline.stream.adapters import KafkaSourcePort
from pipeline.stream.group_watch import OrphanedPartitionWatch

pytestmark = pytest.mark.integration

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000
GRACE_S = 2 * SESSION_TIMEOUT_MS / 1000 + 2  # what the Pipeline uses
CHILD = """
import sys, time
from connectors.source import KafkaFrameSource
source = KafkaFrameSource(sys.argv[1], sys.argv[2], sys.argv[3], session_timeout_ms=6000)
while True:
    source.poll(200)
    print(len(source.assignment()), flush=True)
"""


def _port(servers: str, topic: str, group: str) -> KafkaSourcePort:
    def new() -> KafkaFrameSource:
        return KafkaFrameSource(servers, topic, group, session_timeout_ms=SESSION_TIMEOUT_MS)

    return KafkaSourcePort(new(), reconnect=new)


def _states(ports: list[KafkaSourcePort]) -> list[dict]:
    states = []
    for port in ports:
        port.poll(timeout_ms=50, max_records=10)
        states.append({"running": True, "partitions": sorted(p for _, p in port.assignment()),
                       "topic_partitions": port.partition_count(), "faults_active": {}})
    return states


def _owned(states: list[dict]) -> set[int]:
    return {p for state in states for p in state["partitions"]}


def test_partitions_of_a_killed_consumer_get_an_owner_again(broker):
    servers = broker.bootstrap_servers
    topic, group = f"orphans-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    ensure_topics(servers, {topic: PARTITIONS})
    child = subprocess.Popen([sys.executable, "-c", CHILD, servers, topic, group], stdout=subprocess.PIPE, text=True)
    ports = [_port(servers, topic, group), _port(servers, topic, group)]
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_owned(_states(ports))) != 4:  # the child holds the other 2
            pass
        assert len(_owned(_states(ports))) == 4, f"the group did not settle: {_states(ports)}"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        time.sleep(2)
        ports.append(_port(servers, topic, group))  # the replacement, as a restarted ingest loop

        watch = OrphanedPartitionWatch(grace_s=GRACE_S)
        seen_orphaned: set[int] = set()
        rejoins, all_owned_since = 0, None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = _states(ports)
            seen_orphaned |= set(range(PARTITIONS)) - _owned(states)
            index = watch.check(states)
            if index is not None:
                ports[index].rejoin()
                rejoins += 1
            if _owned(states) == set(range(PARTITIONS)):
                all_owned_since = all_owned_since or time.monotonic()
                if time.monotonic() - all_owned_since > GRACE_S:  # and it stays so
                    break
            else:
                all_owned_since = None
        final = _states(ports)
        assert _owned(final) == set(range(PARTITIONS)), f"unowned after {rejoins} rejoins: {final}"
        assert seen_orphaned and rejoins >= 1, (
            "the broker gave the killed consumer's partitions to the others by itself: the group watch "
            f"was not needed here (orphaned {sorted(seen_orphaned)}, rejoins {rejoins})")
        assert rejoins <= 2, f"the watch kept the group rebalancing: {rejoins} rejoins"
    finally:
        child.kill()
        for port in ports:
            port.close()
