"""Cold start through real services: a class with no bank and 5 % defects on the stream gets an auto-built bank.

Tansu broker, SQLite, real ray.init. The first frames of ``washer`` (no bank: the stream would
dead-letter them as ``unknown_class``) are read back from the frames topic by ``bank auto``'s code,
the most normal become the references of bank v1 (activated), and the running stream then scores
the class with it: the later defects are flagged.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from linesight.settings import load_settings

pytestmark = pytest.mark.integration

FIRST = 34  # seed 4: 2 of the first 34 washer frames are defective


def _publish(settings, broker, count, *, defect_rate, seed):
    from connectors.camera import CameraPublisher
    from connectors.kafka import make_producer
    from training.synthetic import SyntheticLine

    line = SyntheticLine(product_classes=("washer",), defect_rate=defect_rate, seed=seed)
    frames = (("line-1", "cam-1", f.product_class, f.image, {"is_defective": f.is_defective})
              for f in (line.next_frame() for _ in range(count)))
    producer = make_producer(broker.bootstrap_servers, max_request_size=settings.max_frame_bytes)
    try:
        return CameraPublisher(producer, settings.frames_topic).publish(frames, progress=False)
    finally:
        producer.close()


def test_a_class_without_a_bank_ends_with_an_active_auto_bank_that_flags_later_defects(
    broker, ray_session, tmp_path
):
    from model.encoders import build_encoder
    from pipeline.services.banks import BankManager
    from pipeline.services.coldstart import auto_build, read_class_frames
    from pipeline.stream.job import Pipeline, wait_for
    from pipeline.stream.prepare import prepare
    from storage.db import Database
    from storage.repository import Repository

    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        frames_topic=f"frames-{tag}", alerts_topic=f"alerts-{tag}", dead_letter_topic=f"dlq-{tag}",
        consumer_group=f"group-{tag}", frames_partitions=2, database_url=f"sqlite:///{tmp_path / 'l.db'}",
        data_dir=tmp_path, max_batch_size=8, batch_wait_timeout_s=0.02, bank_poll_interval_s=0.2, torch_threads=1,
    )
    prepare(settings, broker.bootstrap_servers)
    first = _publish(settings, broker, FIRST, defect_rate=0.05, seed=4)
    defective = {m.frame_id for m in first if m.extra["is_defective"]}
    assert len(defective) == 2  # the premise: 5.9 % of the first frames are defective

    manager = BankManager(settings, encoder=build_encoder("efficientnet-lite0"))
    assert manager.list("washer") == []  # no bank for the class
    frames = read_class_frames(broker.bootstrap_servers, settings.frames_topic, "washer", FIRST, timeout_s=30,
                               max_frame_bytes=settings.max_frame_bytes)
    assert sorted(f.name for f in frames) == sorted(m.frame_id for m in first)
    result = auto_build(manager, "washer", frames, shots=3, rotations=False)
    references = [name for name, _ in result.chosen]
    assert len(references) == 3
    assert not set(references) & defective  # no defective frame in the bank
    assert (result.row.version, result.row.active) == (1, True)

    later = _publish(settings, broker, 16, defect_rate=0.5, seed=40)
    later_defective = {m.frame_id for m in later if m.extra["is_defective"]}
    assert len(later_defective) >= 4
    repository = Repository(Database(settings.database_url))
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        assert wait_for(lambda: repository.count_inspections() >= FIRST + len(later), 180), (
            f"only {repository.count_inspections()} of {FIRST + len(later)} frames stored"
        )
        pipeline.stop()
    rows = {r.frame_id: r for r in repository.iter_history()}
    assert {r.bank_version for r in rows.values()} == {1}  # every washer frame scored by the auto bank
    later_rows = [rows[m.frame_id] for m in later]
    flagged = np.array([r.is_anomalous for r in later_rows])
    is_bad = np.array([r.frame_id in later_defective for r in later_rows])
    assert flagged[is_bad].mean() >= 0.75  # the later defects are flagged
    assert (~flagged[~is_bad]).mean() >= 0.75  # and the later normal frames pass
