"""The whole stream through real services: Tansu broker, real ray.init, SQLite and PostgreSQL.

Each test uses its own topics and consumer group, so they share one broker and one Ray.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
import ray

from linesight.settings import load_settings

pytestmark = pytest.mark.integration

CLASSES = ("brick", "washer")


def _settings(database_url, tmp_path, **over):
    tag = uuid.uuid4().hex[:8]
    params = {
        "frames_topic": f"frames-{tag}",
        "alerts_topic": f"alerts-{tag}",
        "dead_letter_topic": f"dlq-{tag}",
        "consumer_group": f"group-{tag}",
        "frames_partitions": 2,
        "database_url": database_url,
        "data_dir": tmp_path,
        "max_batch_size": 8,
        "batch_wait_timeout_s": 0.02,
        "bank_poll_interval_s": 0.2,
        "torch_threads": 1,
    }
    return load_settings(**{**params, **over})


@pytest.fixture(scope="module")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


def _prepare(settings, broker, encoder, classes=CLASSES):
    from pipeline.services.banks import BankManager
    from pipeline.stream.prepare import prepare
    from training.synthetic import normal_images, rotations_ok

    prepare(settings, broker.bootstrap_servers)
    manager = BankManager(settings, encoder=encoder)
    for cls in classes:
        manager.build(cls, normal_images(cls, 2, settings.image_size_px, seed=1), rotations=rotations_ok(cls))
    return manager


def _publish(settings, broker, count, *, fps=None, seed=0, classes=CLASSES):
    from connectors.camera import CameraPublisher
    from connectors.kafka import make_producer
    from training.synthetic import SyntheticLine

    line = SyntheticLine(product_classes=classes, defect_rate=0.3, seed=seed)
    frames = (("line-1", "cam-1", f.product_class, f.image, {"is_defective": f.is_defective})
              for f in (line.next_frame() for _ in range(count)))
    producer = make_producer(broker.bootstrap_servers, max_request_size=settings.max_frame_bytes)
    try:
        return CameraPublisher(producer, settings.frames_topic).publish(frames, fps=fps, progress=False)
    finally:
        producer.close()


def _repository(settings):
    from storage.db import Database
    from storage.repository import Repository

    return Repository(Database(settings.database_url))


def _wait_rows(repository, count, timeout_s=120, explain=None):
    """Wait until ``count`` rows are stored; ``explain()`` adds what the test knows about a stall."""
    from pipeline.stream.job import wait_for

    assert wait_for(lambda: repository.count_inspections() >= count, timeout_s), (
        f"only {repository.count_inspections()} of {count} frames stored after {timeout_s} s"
        + (f": {explain()}" if explain is not None else "")
    )


def _stored(repository):
    return list(repository.iter_history())


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_every_frame_stored_exactly_once(engine, broker, ray_session, encoder, tmp_path, request):
    from pipeline.stream.job import Pipeline

    url = f"sqlite:///{tmp_path / 'l.db'}" if engine == "sqlite" else request.getfixturevalue("postgres_url")
    settings = _settings(url, tmp_path)
    _prepare(settings, broker, encoder)
    manifest = _publish(settings, broker, 48)
    repository = _repository(settings)
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        _wait_rows(repository, len(manifest))
        stats = pipeline.stop()
    rows = _stored(repository)
    assert sorted(r.frame_id for r in rows) == sorted(m.frame_id for m in manifest)
    assert stats["stored"] == len(manifest)
    assert {r.bank_version for r in rows} == {1}
    defective = {m.frame_id for m in manifest if m.extra["is_defective"]}
    scores_bad = [r.score for r in rows if r.frame_id in defective]
    scores_good = [r.score for r in rows if r.frame_id not in defective]
    assert np.mean(scores_bad) > np.mean(scores_good)  # the stream scores, it does not just copy
    masks = repository.get_masks(rows[0].id)
    assert masks is not None
    assert masks.mask_png[:4] == b"\x89PNG"


def test_crash_of_the_ingest_loses_nothing_and_duplicates_nothing(broker, ray_session, encoder, tmp_path):
    from pipeline.stream.job import Pipeline

    settings = _settings(f"sqlite:///{tmp_path / 'l.db'}", tmp_path, max_inflight_batches=4)
    _prepare(settings, broker, encoder)
    repository = _repository(settings)
    manifest: list = []
    publisher = threading.Thread(target=lambda: manifest.extend(_publish(settings, broker, 120, fps=40)))
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        publisher.start()
        _wait_rows(repository, 24)
        pipeline.kill_ingest(0)  # no drain, no commit of what was in flight
        killed_at = repository.count_inspections()
        time.sleep(0.5)
        pipeline.watch()  # the supervisor restarts it (its own thread may have done so already)
        assert pipeline.restarts_by_role["ingest"] == 1  # it resumes from committed offsets
        publisher.join(60)
        _wait_rows(repository, 120, timeout_s=180)
        pipeline.stop()
    rows = _stored(repository)
    assert killed_at < 120
    assert len(rows) == 120
    assert sorted(r.frame_id for r in rows) == sorted(m.frame_id for m in manifest)


def test_every_kind_of_bad_frame_reaches_the_dead_letter_topic(broker, ray_session, encoder, tmp_path):
    from connectors.kafka import make_consumer, make_producer
    from connectors.schema import FrameHeaders, encode_image, frame_message
    from pipeline.stream.job import Pipeline

    settings = _settings(f"sqlite:///{tmp_path / 'l.db'}", tmp_path, max_frame_bytes=64 * 1024)
    _prepare(settings, broker, encoder, classes=("brick",))
    image = encode_image(np.full((32, 32, 3), 100, np.uint8))

    def kafka_headers(**over):
        base = FrameHeaders(frame_id=f"f-{uuid.uuid4().hex[:8]}", line_id="line-1", camera_id="cam-1",
                            product_class="brick", captured_at=datetime.now(UTC))
        headers = dict(frame_message(base, image)[2])
        for name, value in over.items():
            if value is None:
                headers.pop(name)
            else:
                headers[name] = value
        return list(headers.items())

    big = encode_image(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8), fmt="png")
    cases = {
        "not_an_image": (b"definitely not a jpeg", kafka_headers()),
        "missing_header": (image, kafka_headers(camera_id=None)),
        "invalid_header": (image, kafka_headers(captured_at=b"not-a-time")),
        "unknown_class": (image, kafka_headers(product_class=b"gearbox")),
        "oversize": (big, kafka_headers()),
    }
    producer = make_producer(broker.bootstrap_servers, max_request_size=4 * 1024 * 1024)
    for value, headers in cases.values():
        producer.send(settings.frames_topic, key=b"line-1", value=value, headers=headers)
    good = _publish(settings, broker, 4, classes=("brick",))
    producer.flush()
    producer.close()
    repository = _repository(settings)
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        _wait_rows(repository, len(good))
        stats = pipeline.stop()
    assert stats["dead_letter_reasons"] == {reason: 1 for reason in cases}

    consumer = make_consumer(broker.bootstrap_servers, group_id=f"check-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([settings.dead_letter_topic])
    seen = {}
    deadline = time.monotonic() + 30
    while len(seen) < len(cases) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                headers = dict(record.headers)
                seen[headers["dlq.reason"].decode()] = headers
    consumer.close()
    assert set(seen) == set(cases)
    for headers in seen.values():
        assert headers["dlq.source_topic"].decode() == settings.frames_topic
        assert headers["dlq.detail"]
    assert repository.count_inspections() == len(good)


def test_hot_swap_under_load(broker, ray_session, encoder, tmp_path):
    from pipeline.stream.job import Pipeline
    from training.synthetic import normal_images, rotations_ok

    settings = _settings(f"sqlite:///{tmp_path / 'l.db'}", tmp_path, frames_partitions=1)
    manager = _prepare(settings, broker, encoder, classes=("brick",))
    repository = _repository(settings)
    manifest: list = []
    publisher = threading.Thread(
        target=lambda: manifest.extend(_publish(settings, broker, 100, fps=30, classes=("brick",)))
    )
    # v2 is built before (a build takes seconds, longer than the 3.3 s of frames on a busy host); the swap is
    # its activation while frames stream
    v2 = manager.build("brick", normal_images("brick", 2, seed=5), rotations=rotations_ok("brick"), activate=False)
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        publisher.start()
        _wait_rows(repository, 20)
        manager.activate("brick", v2.version)
        publisher.join(60)
        _wait_rows(repository, 100)
        pipeline.stop()
    rows = sorted(_stored(repository), key=lambda r: r.source_offset)  # one partition: offset = stream order
    versions = [r.bank_version for r in rows]
    assert len(rows) == 100
    assert len({r.frame_id for r in rows}) == 100
    assert versions[0] == 1
    assert versions[-1] == 2
    first_v2 = versions.index(2)
    assert all(v == 2 for v in versions[first_v2:])  # once swapped, never back: no frame scored twice


def test_alerts_also_reach_the_webhook(broker, ray_session, encoder, tmp_path):
    """LINESIGHT_ALERT_WEBHOOK_URL: every flagged row's alert is POSTed to a real local endpoint."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pipeline.stream.job import Pipeline, wait_for
    from pipeline.stream.monitor import get_monitor

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
        settings = _settings(f"sqlite:///{tmp_path / 'w.db'}", tmp_path, alert_webhook_url=url)
        _prepare(settings, broker, encoder)
        manifest = _publish(settings, broker, 32, seed=5)
        repository = _repository(settings)
        with Pipeline(settings, broker.bootstrap_servers):
            _wait_rows(repository, len(manifest))
            flagged = {r.frame_id for r in _stored(repository) if r.is_anomalous}
            assert flagged, "the synthetic line at 30% defects flagged nothing"
            assert wait_for(lambda: {a["frame_id"] for a in received} >= flagged, 30), (
                f"webhook got {len(received)} alerts for {len(flagged)} flagged frames"
            )
            assert wait_for(lambda: ray.get(get_monitor().snapshot.remote())["webhook_delivered"] >= len(flagged), 10)
    finally:
        server.shutdown()
        server.server_close()
    assert {a["frame_id"] for a in received} == flagged
    assert all(a["alert_id"] == a["frame_id"] and a["positions"] for a in received)


def test_a_zero_shot_class_is_scored_without_a_bank_until_its_first_bank(broker, ray_session, encoder, tmp_path):
    """LINESIGHT_ZERO_SHOT_CLASSES: frames of a class with no bank are scored by the trained decoder
    (bank version 0, threshold 0.5) instead of being dead-lettered; its first bank takes over mid-stream."""
    from model.decoder import TextAlignedDecoder, save_decoder
    from pipeline.stream.job import Pipeline
    from training.synthetic import normal_images, rotations_ok

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    save_decoder(TextAlignedDecoder(encoder.stage_channels, 384, image_size_px=encoder.image_size_px),
                 checkpoint / "decoder.safetensors")
    settings = _settings(f"sqlite:///{tmp_path / 'z.db'}", tmp_path, frames_partitions=1,
                         zero_shot_classes="washer", checkpoint_dir=checkpoint)
    manager = _prepare(settings, broker, encoder, classes=("brick",))
    repository = _repository(settings)
    manifest: list = []
    publisher = threading.Thread(target=lambda: manifest.extend(_publish(settings, broker, 100, fps=30)))
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        publisher.start()
        _wait_rows(repository, 20)
        manager.build("washer", normal_images("washer", 2, seed=5), rotations=rotations_ok("washer"))  # v1
        publisher.join(60)
        _wait_rows(repository, 100)
        pipeline.stop()
    rows = sorted(_stored(repository), key=lambda r: r.source_offset)
    assert len(rows) == len({r.frame_id for r in rows}) == 100  # none dead-lettered as unknown_class
    washer = [r for r in rows if r.product_class == "washer"]
    versions = [r.bank_version for r in washer]
    assert versions[0] == 0
    assert versions[-1] == 1
    assert versions == sorted(versions)  # zero-shot until the bank arrived, then the bank only
    assert all(r.threshold == 0.5 for r in washer if r.bank_version == 0)
    assert all(r.bank_version == 1 for r in rows if r.product_class == "brick")
