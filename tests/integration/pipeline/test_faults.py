"""Faults injected into a live stream (real Tansu, Ray and PostgreSQL), reconciled frame by frame.

Per fault: frames sent = rows stored + frames dead-lettered for their own fault; no good frame
dead-lettered; no duplicate row; every flagged row alerted (and on the alerts topic); the stream
recovers by itself. The database outage uses a private PostgreSQL on its own port (never the
shared server on 5432), stopped and started again mid-stream.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import ray

from tests.integration.pipeline.test_stream import _prepare, _publish, _repository, _settings, _wait_rows

pytestmark = pytest.mark.integration

OWN_FAULTS = {"oversize", "missing_header", "invalid_header", "not_an_image", "bad_image_shape", "unknown_class",
              "frame_id_conflict"}


class PrivatePostgres:
    """A throw-away PostgreSQL server (Debian binaries) in ``folder`` on ``port``, run as user postgres."""

    def __init__(self, folder: Path, port: int) -> None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not candidates:
            pytest.fail("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
        self.bin = Path(candidates[-1]).parent
        self.folder, self.port = folder, port
        self.data = folder / "data"
        shutil.chown(folder, "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _as_postgres(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if shutil.which("runuser"):  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="module")
def private_postgres():
    from connectors.tansu import free_port

    folder = Path(tempfile.mkdtemp(prefix="linesight-pg-"))  # pytest's folders are closed to user postgres
    try:
        server = PrivatePostgres(folder, free_port())
        server.start()
        try:
            yield server
        finally:
            try:
                server.stop()
            except RuntimeError:
                pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


def _topic_records(settings, broker, topic: str, expected: int, quiet_s: float = 3.0, timeout_s: float = 60.0):
    """Every record of ``topic`` (waits for ``expected``, then ``quiet_s`` more for extras)."""
    from connectors.kafka import make_consumer

    consumer = make_consumer(broker.bootstrap_servers, group_id=f"check-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    records, deadline, quiet_until = [], time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < deadline:
            batch = [r for rs in consumer.poll(timeout_ms=300).values() for r in rs]
            records.extend(batch)
            if len(records) >= expected:
                quiet_until = quiet_until or time.monotonic() + quiet_s
                if time.monotonic() >= quiet_until:
                    break
    finally:
        consumer.close()
    return records


def _reconcile(settings, broker, repository, good: list, own_fault: int = 0) -> dict:
    """The per-fault assertions; returns the figures for the README table."""
    rows = list(repository.iter_history())
    stored = [r.frame_id for r in rows]
    dead = _topic_records(settings, broker, settings.dead_letter_topic, own_fault)
    reasons = [dict(r.headers)["dlq.reason"].decode() for r in dead]
    dead_at = {(int(dict(r.headers)["dlq.source_partition"]), int(dict(r.headers)["dlq.source_offset"])) for r in dead}
    flagged = {r.frame_id for r in rows if r.is_anomalous}
    alerts = _topic_records(settings, broker, settings.alerts_topic, len(flagged))
    alerted = {r.key.decode() if r.key else "" for r in alerts} | {_alert_frame(r) for r in alerts}
    sent = {m.frame_id for m in good}
    assert len(stored) == len(set(stored)), "duplicate rows"
    assert set(stored) == sent, f"{len(sent - set(stored))} good frames not stored"
    assert len(good) + own_fault == len(stored) + len(dead)
    assert all(reason in OWN_FAULTS for reason in reasons), f"dead letters for no fault of the frame: {reasons}"
    assert not dead_at & {(m.partition, m.offset) for m in good}, "a good frame was dead-lettered"
    assert all(r.alert_sent_at is not None for r in rows if r.is_anomalous)
    assert flagged <= alerted, f"{len(flagged - alerted)} flagged frames have no alert on the topic"
    return {"sent": len(good) + own_fault, "stored": len(stored), "dead_lettered": len(dead), "flagged": len(flagged),
            "alerts": len(alerts)}


def _alert_frame(record) -> str:
    import json

    try:
        return json.loads(record.value)["frame_id"]
    except Exception:
        return ""


def _publish_in_background(settings, broker, count: int, fps: float, seed: int):
    manifest: list = []
    thread = threading.Thread(target=lambda: manifest.extend(_publish(settings, broker, count, fps=fps, seed=seed)))
    thread.start()
    return manifest, thread


def test_a_database_outage_loses_nothing_and_the_stream_recovers(broker, ray_session, encoder, tmp_path,
                                                                   private_postgres):
    from pipeline.stream.job import Pipeline, wait_for
    from pipeline.stream.monitor import get_monitor

    settings = _settings(private_postgres.url, tmp_path, fault_retry_max_s=1.0)
    _prepare(settings, broker, encoder)
    repository = _repository(settings)
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        manifest, publisher = _publish_in_background(settings, broker, 90, fps=15, seed=3)
        _wait_rows(repository, 10)
        private_postgres.stop()
        try:
            assert wait_for(lambda: pipeline.stats()["faults_active"], 30), "the outage was not noticed"
            assert wait_for(lambda: ray.get(get_monitor().snapshot.remote())["stream_state"] == "degraded", 10)
            time.sleep(8)
            during = pipeline.stats()
        finally:
            private_postgres.start()
        publisher.join(60)
        _wait_rows(repository, len(manifest), timeout_s=180)
        assert wait_for(lambda: not pipeline.stats()["faults_active"], 30), "the stream did not recover by itself"
        stats = pipeline.stop()
    assert during["dead_lettered"] == 0
    assert set(stats["fault_kinds"]) & {"database", "bank_lookup"}
    assert stats["restarts"] == 0
    print("database outage:", _reconcile(settings, broker, repository, manifest), stats["fault_kinds"])


def test_inference_and_sink_actors_killed_for_good_are_recreated(broker, ray_session, encoder, tmp_path):
    from pipeline.stream.job import Pipeline, wait_for
    from pipeline.stream.monitor import get_monitor

    settings = _settings(f"sqlite:///{tmp_path / 'k.db'}", tmp_path, fault_retry_max_s=1.0)
    _prepare(settings, broker, encoder)
    repository = _repository(settings)
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        manifest, publisher = _publish_in_background(settings, broker, 90, fps=12, seed=4)
        _wait_rows(repository, 8)
        for kill in range(8):  # max_restarts=2: the third kill of an actor is for good
            ray.kill(pipeline.inference[kill % 2], no_restart=False)
            time.sleep(1.5)
        ray.kill(pipeline.sinks[0])  # no restarts for a sink: the supervisor replaces it
        publisher.join(60)
        _wait_rows(repository, len(manifest), timeout_s=240)
        assert wait_for(lambda: ray.get(get_monitor().snapshot.remote())["actor_restarts"]["inference"] >= 1, 10)
        stats = pipeline.stop()
    assert stats["restarts_by_role"]["inference"] >= 1  # Ray gave up; the supervisor recreated them
    assert stats["restarts_by_role"]["sink"] == 1
    assert stats["restarts_by_role"]["ingest"] == 0
    assert stats["inference_errors"] == 0
    print("inference and sink kills:", _reconcile(settings, broker, repository, manifest), stats["restarts_by_role"])


def _rewind_group(settings, broker, offset: int) -> None:
    """What ``kafka-consumer-groups --reset-offsets --to-offset`` does: as a member of the group (Tansu takes
    commits from members only), commit ``offset`` for every partition."""
    from kafka.structs import OffsetAndMetadata

    from connectors.kafka import make_consumer

    consumer = make_consumer(broker.bootstrap_servers, group_id=settings.consumer_group, max_poll_records=1)
    consumer.subscribe([settings.frames_topic])
    deadline = time.monotonic() + 30
    try:
        while len(consumer.assignment()) < settings.frames_partitions and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        assert consumer.assignment(), "could not join the group to reset its offsets"
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp in consumer.assignment()})
    finally:
        consumer.close(autocommit=False)


def test_a_poison_record_and_a_reused_frame_id_are_dead_lettered_once_without_stalling(broker, ray_session, encoder,
                                                                                     tmp_path):
    """Dead-lettered, then read again (an ingest crash, the group rewound past both): no dead letter twice."""
    from connectors.kafka import make_consumer, make_producer
    from connectors.schema import FrameHeaders, encode_image, frame_message
    from pipeline.stream.job import Pipeline, wait_for
    from storage.dead_letters import count_dead_letters

    settings = _settings(f"sqlite:///{tmp_path / 'p.db'}", tmp_path, max_frame_bytes=64 * 1024, frames_partitions=1)
    _prepare(settings, broker, encoder)
    before = _publish(settings, broker, 20, seed=5)
    producer = make_producer(broker.bootstrap_servers, max_request_size=4 * 1024 * 1024)
    headers = [("frame_id", b"p" * 300_000), ("line_id", b"line-1"), ("camera_id", b"cam-1"),
               ("product_class", b"brick"), ("captured_at", b"2026-12-01T00:00:00+00:00")]
    producer.send(settings.frames_topic, key=b"line-1", value=b"\xff\xd8junk", headers=headers).get(timeout=30)
    after = _publish(settings, broker, 20, seed=6)
    reused = FrameHeaders(frame_id=before[0].frame_id, line_id="line-1", camera_id="cam-1", product_class="brick",
                          captured_at=datetime.now(UTC))  # a stored frame_id, other bytes
    key, value, kafka_headers = frame_message(reused, encode_image(np.full((64, 64, 3), 7, np.uint8)))
    producer.send(settings.frames_topic, key=key, value=value, headers=kafka_headers).get(timeout=30)
    producer.close()
    repository = _repository(settings)
    with Pipeline(settings, broker.bootstrap_servers, supervise=False) as pipeline:
        _wait_rows(repository, 40, timeout_s=120)
        assert wait_for(lambda: count_dead_letters(repository.database) == 2, 60)  # written, flushed, recorded
        first = pipeline.stats()
        pipeline.kill_ingest(0)  # a crash, then the group rewound to the poison record: 22 records read again
        _rewind_group(settings, broker, offset=len(before))
        pipeline.watch()
        assert wait_for(lambda: pipeline.stats()["dead_letters_replayed"] >= 2 and pipeline.stats()["redelivered"]
                        >= len(after), 90), "the replay did not finish"
        stats = pipeline.stop()
    assert first["restarts"] == 0
    assert first["errors"] == []
    assert first["dead_letter_reasons"] == {"invalid_header": 1, "frame_id_conflict": 1}
    assert (stats["dead_letters_replayed"], stats["dead_lettered"], stats["stored"]) == (2, 0, 0)  # the replay
    figures = _reconcile(settings, broker, repository, before + after, own_fault=2)
    dead_records = _topic_records(settings, broker, settings.dead_letter_topic, 2)
    per_offset = Counter((dict(r.headers)["dlq.source_partition"], dict(r.headers)["dlq.source_offset"])
                         for r in dead_records)
    assert sorted(per_offset.values()) == [1, 1], f"dead letters per source offset: {per_offset}"
    dead = {dict(r.headers)["dlq.reason"]: dict(r.headers) for r in dead_records}
    assert b"frame_id=300000" in dead[b"invalid_header"]["dlq.headers_cut"]
    assert dead[b"frame_id_conflict"]["frame_id"].decode() == before[0].frame_id
    consumer = make_consumer(broker.bootstrap_servers, group_id=settings.consumer_group)  # everything committed
    consumer.subscribe([settings.frames_topic])
    replayed = [r for _ in range(10) for rs in consumer.poll(timeout_ms=500).values() for r in rs]
    consumer.close(autocommit=False)
    assert replayed == []
    figures["dead_letters_per_source_offset"] = sorted(per_offset.values())
    figures["replayed"] = {k: stats[k] for k in ("redelivered", "dead_letters_replayed", "dead_lettered")}
    print("poison record + reused frame_id:", figures)


def test_a_broker_restart_is_reported_and_the_stream_resumes_by_itself(ray_session, encoder, tmp_path):
    """A private embedded broker (memory only) stopped mid-stream and started again on its port, empty."""
    from connectors.tansu import EmbeddedBroker, free_port
    from pipeline.stream.job import Pipeline, wait_for
    from pipeline.stream.monitor import get_monitor

    broker = EmbeddedBroker(port=free_port(), log_dir=tmp_path / "tansu").start()
    settings = _settings(f"sqlite:///{tmp_path / 'b.db'}", tmp_path, fault_retry_max_s=1.0)
    pipeline = None
    try:
        _prepare(settings, broker, encoder)
        repository = _repository(settings)
        pipeline = Pipeline(settings, broker.bootstrap_servers).start()
        before = _publish(settings, broker, 16, seed=8)
        _wait_rows(repository, len(before))
        broker.stop()  # topics, unread frames and committed offsets are gone with it
        down_at = time.monotonic()
        assert wait_for(lambda: "broker" in pipeline.stats()["faults_active"], 30), "the broker outage went unnoticed"
        noticed_s = time.monotonic() - down_at
        assert wait_for(lambda: ray.get(get_monitor().snapshot.remote())["stream_state"] == "degraded", 10)
        broker.start()  # the same port, empty
        after = _publish(settings, broker, 16, seed=9)
        _wait_rows(repository, len(before) + len(after), timeout_s=120)
        assert wait_for(lambda: not pipeline.stats()["faults_active"], 30), "the stream did not recover by itself"
        recovered_s = time.monotonic() - down_at
        # the sink stores a batch, then sends its alerts, then marks them sent: wait for the marks
        assert wait_for(lambda: all(r.alert_sent_at is not None for r in repository.iter_history() if r.is_anomalous),
                        30), "flagged rows left without an alert"
        rows = list(repository.iter_history())
        stored = [r.frame_id for r in rows]
        assert len(stored) == len(set(stored)), "duplicate rows"
        assert set(stored) == {m.frame_id for m in before + after}
        flagged_after = {r.frame_id for r in rows if r.is_anomalous} & {m.frame_id for m in after}
        alerts = _topic_records(settings, broker, settings.alerts_topic, len(flagged_after))
        assert flagged_after <= {_alert_frame(r) for r in alerts}  # the earlier alerts were lost with the broker
        broker.stop()  # a second outage, and a stop request while it lasts (what SIGTERM does in `linesight run`)
        assert wait_for(lambda: "broker" in pipeline.stats()["faults_active"], 30)
        asked_at = time.monotonic()
        stats = pipeline.stop()
        stop_s = time.monotonic() - asked_at
    finally:
        if pipeline is not None:
            pipeline.stop()
        broker.stop()
    assert stop_s < 30, f"stopping took {stop_s:.1f} s while the broker was away"
    assert stats["dead_lettered"] == 0
    assert stats["source_reconnects"] >= 1
    assert stats["fault_kinds"]["broker"] >= 1
    print(f"broker restart: sent {len(before) + len(after)}, stored {len(stored)}, flagged after the restart "
          f"{len(flagged_after)}, alerted {len(alerts)}; noticed after {noticed_s:.1f} s, recovered "
          f"{recovered_s:.1f} s after the stop; stop during the second outage {stop_s:.2f} s;",
          {k: stats[k] for k in ("fault_kinds", "source_reconnects", "redelivered", "commit_failures")})
