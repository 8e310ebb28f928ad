"""A dead letter always fits the dead-letter topic: oversize values and headers are cut, the reason kept."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.dead_letter import DeadLetterSink


class _Future:
    def add_errback(self, *args):
        return self


class _Producer:
    """Records what was sent; refuses what a real producer with this max_request_size would refuse."""

    config = {"max_request_size": 64 * 1024}

    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None, headers=None):
        size = len(value or b"") + sum(len(n) + len(v) for n, v in headers or [])
        assert size <= self.config["max_request_size"], f"a {size}-byte record would be refused"
        self.sent.append((topic, key, value, headers))
        return _Future()

    def flush(self, timeout=None):
        pass


@dataclass
class _Record:
    topic: str = "frames"
    partition: int = 0
    offset: int = 9
    key: bytes = b"line-1"
    value: bytes = b"x"
    headers: list = None


def test_oversize_headers_are_cut_and_named_and_the_reason_kept():
    producer = _Producer()
    record = _Record(headers=[("frame_id", b"f" * 200_000), ("line_id", b"line-1"), ("y" * 5000, b"v")])
    DeadLetterSink(producer, "dlq").send(record, "invalid_header", "header 'frame_id' is too long")
    (_, _, value, headers), = producer.sent
    names = dict(headers)
    assert names["dlq.reason"] == b"invalid_header"
    assert len(names["frame_id"]) <= 1024  # emptied or shortened
    assert names["line_id"] == b"line-1"
    assert b"frame_id=200000" in names["dlq.headers_cut"]
    assert names["dlq.source_offset"] == b"9"
    assert value == b"x"


def test_ordinary_dead_letters_keep_every_header():
    producer = _Producer()
    DeadLetterSink(producer, "dlq").send(_Record(headers=[("frame_id", b"f-1")]), "not_an_image", "junk")
    headers = dict(producer.sent[0][3])
    assert headers["frame_id"] == b"f-1"
    assert "dlq.headers_cut" not in headers


def test_warm_up_is_bounded_when_the_broker_does_not_answer(caplog):
    import threading
    import time

    release = threading.Event()

    class _Silent(_Producer):
        def partitions_for(self, topic):
            release.wait(30)  # a real producer waits max_block_ms (a minute) for metadata

    sink = DeadLetterSink(_Silent(), "dlq")
    start = time.monotonic()
    assert sink.warm_up(timeout_s=0.2) is False
    assert time.monotonic() - start < 5
    assert "no answer within 0.2 s" in caplog.text
    release.set()

    class _Answers(_Producer):
        def partitions_for(self, topic):
            return {0}

    assert DeadLetterSink(_Answers(), "dlq").warm_up() is True
