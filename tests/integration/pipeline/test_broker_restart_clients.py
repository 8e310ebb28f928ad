"""The stream's Kafka clients across a restart of a (memory-only) Tansu broker on the same port.

kafka-python alone does not survive it: while the broker is away ``poll`` returns nothing without an
error; afterwards the old consumer keeps a stale group membership, and an idempotent producer whose
id the new broker does not know fails every send. The source port notices (a bounded metadata probe)
and reconnects; a sink given ``renew`` replaces its producer after the failed flush.
"""

from __future__ import annotations

import time

import pytest

from connectors.dead_letter import DeadLetterSink
from connectors.exceptions import DeliveryError
from connectors.kafka import ensure_topics, make_producer
from connectors.source import KafkaFrameSource
from connectors.tansu import EmbeddedBroker, free_port
from pipeline.exceptions import InfrastructureFault
from pipeline.stream.adapters import KafkaBrokerProbe, KafkaSourcePort, stream_producer_factory
from tests.integration.connectors.conftest import consume_all

pytestmark = pytest.mark.integration


class _Record:
    topic, partition, key, headers = "frames", 0, b"line-1", [("frame_id", b"f")]

    def __init__(self, offset: int) -> None:
        self.offset, self.value = offset, b"junk %d" % offset


def _publish(servers: str, topic: str, count: int) -> None:
    producer = make_producer(servers, max_request_size=1 << 20)
    try:
        for index in range(count):
            producer.send(topic, key=b"k", value=b"v%d" % index)
        producer.flush(timeout=20)
    finally:
        producer.close()


def _poll_records(port: KafkaSourcePort, expected: int, timeout_s: float = 30.0) -> list:
    records, deadline = [], time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        try:
            records.extend(port.poll(timeout_ms=200, max_records=50))
        except InfrastructureFault:
            time.sleep(0.2)
    return records


def test_the_source_and_a_renewing_sink_survive_a_broker_restart(tmp_path):
    broker = EmbeddedBroker(port=free_port(), log_dir=tmp_path).start()
    servers = broker.bootstrap_servers
    topics = {"frames": 1, "dlq": 1}

    def new_source():
        return KafkaFrameSource(servers, "frames", "g-restart", session_timeout_ms=6000)

    def reconnect():  # what the ingest service does: the restarted broker is empty
        ensure_topics(servers, topics)
        return new_source()

    ensure_topics(servers, topics)
    port = KafkaSourcePort(new_source(), probe=KafkaBrokerProbe(servers, timeout_ms=1000), reconnect=reconnect,
                           probe_interval_s=0.5)
    new_producer = stream_producer_factory(servers, max_request_size=1 << 20)
    sink = DeadLetterSink(new_producer(), "dlq", renew=new_producer, flush_timeout_s=10)
    try:
        _publish(servers, "frames", 3)
        assert len(_poll_records(port, 3)) == 3
        sink.send(_Record(0), "not_an_image", "before")
        sink.flush()

        broker.stop()
        started, fault = time.monotonic(), None
        while fault is None and time.monotonic() - started < 15:
            try:
                port.poll(timeout_ms=200, max_records=50)
            except InfrastructureFault as exc:
                fault = exc
        assert fault is not None, "the source did not notice the broker going away"
        assert fault.kind == "broker"
        noticed_s = time.monotonic() - started

        broker.start()  # the same port, no topics, no groups
        _publish(servers, "frames", 4)
        after = _poll_records(port, 4)
        assert sorted(r.value for r in after) == [b"v0", b"v1", b"v2", b"v3"]
        assert (port.generation, port.reconnects) == (1, 1)

        sink.send(_Record(1), "not_an_image", "after")
        with pytest.raises(DeliveryError):  # the old producer's id is unknown to the new broker
            sink.flush()
        sink.send(_Record(1), "not_an_image", "after, again")  # through a new producer
        sink.flush()
        assert sink.renewed == 1
        [written] = consume_all(servers, "dlq", expected=1)
        assert dict(written.headers)["dlq.detail"] == b"after, again"
        print(f"broker restart: the source noticed in {noticed_s:.1f} s; reconnected once; the sink renewed once")
    finally:
        port.close()
        if sink.producer is not None:
            sink.producer.close(timeout=2)
        broker.stop()
