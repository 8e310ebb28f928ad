"""Partition shares on the real (embedded Tansu) broker: loops that split the frames partitions among
themselves, and a killed one's replacement that takes its share back from the committed offsets.

The stream's default (``partition_assignment=static``). With the consumer-group protocol instead, Tansu
0.6 left a SIGKILLed member's partitions without an owner when its replacement joined before the dead
member's session expired; shares do not depend on the coordinator noticing a dead member at all.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest
from kafka import TopicPartition

from connectors.exceptions import ConnectorError
from connectors.kafka import ensure_topics
from connectors.source import KafkaFrameSource

pytestmark = pytest.mark.integration

PARTITIONS = 6
CHILD = """
import sys, time
from kafka import TopicPartition
from connectors.source import KafkaFrameSource
source = KafkaFrameSource(sys.argv[1], sys.argv[2], sys.argv[3], share=(2, 3))
print(sorted(tp.partition for tp in source.assignment()), flush=True)
read = committed = 0
while read < 20:  # its 20 records: the first 6 or so committed, the rest read and never committed
    records = source.poll(200, max_records=2)
    read += len(records)
    if records and committed < 6:
        offsets = {}
        for r in records:
            offsets[TopicPartition(r.topic, r.partition)] = r.offset + 1
        source.commit(offsets)
        committed += len(records)
print(committed, flush=True)
time.sleep(600)  # killed here, as a lost loop: what it read past its commits was never committed
"""


def _read(source: KafkaFrameSource, until: int, timeout_s: float = 30) -> list:
    records: list = []
    deadline = time.monotonic() + timeout_s
    while len(records) < until and time.monotonic() < deadline:
        records += source.poll(timeout_ms=200)
    return records


def test_shares_split_the_partitions_and_a_replacement_resumes_the_killed_ones(broker, producer):
    servers = broker.bootstrap_servers
    topic, group = f"shares-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    ensure_topics(servers, {topic: PARTITIONS})
    for index in range(60):  # 10 per partition
        producer.send(topic, key=b"k", value=f"{index}".encode(), partition=index % PARTITIONS)
    producer.flush()

    loops = [KafkaFrameSource(servers, topic, group, share=(index, 3)) for index in range(2)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, servers, topic, group], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "[2, 5]"
        assert [sorted(tp.partition for tp in loop.assignment()) for loop in loops] == [[0, 3], [1, 4]]
        said_committed = int(child.stdout.readline())  # it read all 20 and committed only the first ones
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        committed = sum(loops[0].committed(TopicPartition(topic, p)) or 0 for p in (2, 5))
        assert committed == said_committed
        assert 6 <= committed < 20

        replacement = KafkaFrameSource(servers, topic, group, share=(2, 3))  # at once: no session to expire
        resumed = _read(replacement, until=20 - committed)
        assert sorted((r.partition, r.offset) for r in resumed) == sorted(
            (p, offset) for p in (2, 5)
            for offset in range(loops[0].committed(TopicPartition(topic, p)) or 0, 10))
        for loop in loops:  # the others were never disturbed: each reads its own 20
            records = _read(loop, until=20)
            assert sorted((r.partition, r.offset) for r in records) == sorted(
                (tp.partition, offset) for tp in loop.assignment() for offset in range(10))
        replacement.close()
    finally:
        child.kill()
        for loop in loops:
            loop.close()


def test_a_share_of_a_missing_topic_names_it(broker):
    with pytest.raises(ConnectorError, match="no-such-topic"):
        KafkaFrameSource(broker.bootstrap_servers, f"no-such-topic-{uuid.uuid4().hex[:6]}", "g", share=(0, 1))


def test_a_bad_share_names_itself(broker, topic_factory):
    with pytest.raises(ConnectorError, match=r"\(3, 3\)"):
        KafkaFrameSource(broker.bootstrap_servers, topic_factory(partitions=3), "g", share=(3, 3))
