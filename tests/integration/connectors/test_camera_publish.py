"""Cameras publish through a real broker: counts, per-line keys, manifest, limits, and the CLI commands."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import numpy as np
import pytest

from connectors.alerts import Alert, AlertSink
from connectors.camera import CameraPublisher, interleave
from connectors.exceptions import DeliveryError
from connectors.kafka import make_producer
from connectors.schema import Frame, parse_record
from linesight.cli import main
from tests.integration.connectors.conftest import MAX_FRAME_BYTES, consume_all

pytestmark = pytest.mark.integration


def numpy_line(line_id: str, seed: int):
    """An endless generated source with ground truth: every third frame is 'defective'."""
    rng = np.random.default_rng(seed)
    for index in itertools.count():
        image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        yield line_id, f"cam-{line_id}", "gravel", image, {"is_defective": index % 3 == 0}


def test_publishing_n_frames_for_two_lines_lands_n_messages(broker, producer, topic_factory):
    topic = topic_factory(partitions=4)
    publisher = CameraPublisher(producer, topic, fmt="png")
    manifest = publisher.publish(interleave([numpy_line("l1", 1), numpy_line("l2", 2)]), fps=None, count=9)

    assert len(manifest) == 9
    assert len({m.frame_id for m in manifest}) == 9
    assert [m.line_id for m in manifest] == ["l1", "l2"] * 4 + ["l1"]
    assert [m.is_defective for m in manifest if m.line_id == "l1"] == [True, False, False, True, False]
    records = consume_all(broker.bootstrap_servers, topic, expected=9)
    assert len(records) == 9
    frames = [parse_record(r, max_frame_bytes=MAX_FRAME_BYTES) for r in records]
    assert all(isinstance(f, Frame) for f in frames)
    assert {f.headers.frame_id for f in frames} == {m.frame_id for m in manifest}
    where = {(m.partition, m.offset) for m in manifest}
    assert where == {(r.partition, r.offset) for r in records}
    for line in ("l1", "l2"):  # a line's frames share one partition, in publishing order
        mine = [f for f in frames if f.headers.line_id == line]
        assert len({f.partition for f in mine}) == 1
        assert [f.headers.frame_id for f in sorted(mine, key=lambda f: f.offset)] == [
            m.frame_id for m in manifest if m.line_id == line
        ]
        assert all(f.headers.captured_at.tzinfo is not None for f in mine)


def test_paced_publishing_delivers_everything(broker, producer, topic_factory):
    topic = topic_factory()
    manifest = CameraPublisher(producer, topic).publish(numpy_line("l1", 3), fps=200.0, count=5, progress=True)
    assert len(consume_all(broker.bootstrap_servers, topic, expected=5)) == len(manifest) == 5


def test_oversize_camera_frame_fails_naming_the_frame(broker, topic_factory):
    topic = topic_factory()
    producer = make_producer(broker.bootstrap_servers, max_request_size=64 * 1024)
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # PNG ~270 KB
    try:
        with pytest.raises(DeliveryError, match=r"frame l1-\w+-0000001 is \d+ bytes.*max_request_size \(65536\)"):
            CameraPublisher(producer, topic, fmt="png").publish([("l1", "c1", "brick", noise, {})])
    finally:
        producer.close()


def test_camera_command_publishes_synthetic_frames(broker, topic_factory, monkeypatch, capsys):
    topic = topic_factory(partitions=2)
    monkeypatch.setenv("LINESIGHT_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("LINESIGHT_FRAMES_TOPIC", topic)
    monkeypatch.setenv("LINESIGHT_IMAGE_SIZE_PX", "64")
    code = main(["camera", "--source", "synthetic", "--lines", "2", "--count", "3", "--fps", "0",
                 "--class", "grass", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "published 6 frames (2 line(s), classes grass" in out
    assert topic in out
    records = consume_all(broker.bootstrap_servers, topic, expected=6)
    assert sorted(dict(r.headers)["line_id"] for r in records) == [b"line-1"] * 3 + [b"line-2"] * 3


def test_camera_command_needs_a_path_for_folders(broker, monkeypatch, capsys):
    monkeypatch.setenv("LINESIGHT_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    assert main(["camera", "--source", "folder", "--class", "brick"]) == 2
    assert "--path" in capsys.readouterr().err


def test_alerts_command_prints_json_lines(broker, producer, topic_factory, monkeypatch, capsys):
    topic = topic_factory(prefix="alerts")
    now = datetime.now(UTC)
    sink = AlertSink(producer, topic)
    for index in range(2):
        sink.send(Alert(
            frame_id=f"line-1-{index}", line_id="line-1", camera_id="cam-1", product_class="washer",
            captured_at=now, scored_at=now, score=0.7, threshold=0.5, positions=["center"], region_count=1,
            verdict="Yes.", bank_version=1,
        ))
    sink.flush()
    monkeypatch.setenv("LINESIGHT_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("LINESIGHT_ALERTS_TOPIC", topic)
    assert main(["alerts", "--from-beginning", "--count", "2", "--json", "--timeout-s", "30"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert sorted(json.loads(line)["alert_id"] for line in lines) == ["line-1-0", "line-1-1"]
