"""The stream learns from itself and from operators, through real services (Tansu broker, real ray.init, SQLite).

- Self-calibration: a class whose threshold is deliberately too high streams normal frames; after
  ``N`` of them the driver's supervision loop activates a self-calibrated version whose threshold
  is the robust tail of the stream's own scores; later defects the old threshold would have missed
  are flagged, ordinary parts are not, and the banks endpoint shows where the new version came from.
- Feedback: a harmless stamp is flagged; an operator marks one such frame a false alarm through the
  API, ``linesight bank learn`` swaps a new version into the running stream, and stamped parts
  published afterwards pass while real defects are still flagged.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace

import cv2
import numpy as np
import pytest

from linesight.settings import load_settings

pytestmark = pytest.mark.integration

N = 60  # frames a version scores before the stream refines it (the smallest setting allowed is 50)
TOKEN = "learning-stream-token-0123"
OFF = 1.3  # the deliberately wrong threshold: 30 % above where the stream's normal scores put it


def _settings(tmp_path, **over):
    tag = uuid.uuid4().hex[:8]
    return load_settings(**{
        "frames_topic": f"frames-{tag}", "alerts_topic": f"alerts-{tag}", "dead_letter_topic": f"dlq-{tag}",
        "consumer_group": f"group-{tag}", "frames_partitions": 2, "database_url": f"sqlite:///{tmp_path / 'l.db'}",
        "data_dir": tmp_path, "max_batch_size": 8, "batch_wait_timeout_s": 0.02, "bank_poll_interval_s": 0.2,
        "supervise_interval_s": 0.5, "torch_threads": 1, **over,
    })


@pytest.fixture(scope="module")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


def _frames(count, *, seed, defect_rate=0.0):
    from training.synthetic import SyntheticLine

    line = SyntheticLine(product_classes=("washer",), defect_rate=defect_rate, seed=seed)
    return [line.next_frame() for _ in range(count)]


def _publish(settings, broker, items, *, fps=None):
    """Publish ``(image, kind)`` pairs as washer frames of line-1; the manifest carries each frame's kind."""
    from connectors.camera import CameraPublisher
    from connectors.kafka import make_producer

    producer = make_producer(broker.bootstrap_servers, max_request_size=settings.max_frame_bytes)
    try:
        return CameraPublisher(producer, settings.frames_topic).publish(
            (("line-1", "cam-1", "washer", image, {"kind": kind}) for image, kind in items), fps=fps, progress=False)
    finally:
        producer.close()


def _repository(settings):
    from storage.db import Database
    from storage.repository import Repository

    return Repository(Database(settings.database_url))


def _wait_rows(repository, count, timeout_s=90):
    from pipeline.stream.job import wait_for

    assert wait_for(lambda: repository.count_inspections() >= count, timeout_s), (
        f"only {repository.count_inspections()} of {count} frames stored after {timeout_s} s"
    )


def _robust_tail(scores):
    scores = np.asarray(scores)
    median = np.median(scores)
    return float(median + 4 * 1.4826 * np.median(np.abs(scores - median)))


def _app(settings, repository):
    from fastapi.testclient import TestClient

    from linesight.api.app import create_app

    return TestClient(create_app(settings, token=TOKEN, repository=repository, stream_snapshot=lambda: None))


def test_a_threshold_that_is_off_moves_to_the_streams_own_tail_within_n_frames(broker, ray_session, encoder,
                                                                                tmp_path):
    from connectors.schema import decode_image, encode_image
    from model.bank import MemoryBank
    from model.calibration import STREAM_METHOD, Calibration
    from model.factory import build_detector
    from pipeline.services.banks import BankManager
    from pipeline.stream.job import Pipeline, wait_for
    from pipeline.stream.prepare import prepare
    from training.synthetic import SyntheticLine, normal_images

    settings = _settings(tmp_path, self_calibrate_after_frames=N)
    prepare(settings, broker.bootstrap_servers)
    manager = BankManager(settings, encoder=encoder)
    built = manager.build("washer", normal_images("washer", 2, seed=1), rotations=False)
    # where the stream's normal scores will put the threshold, scored here the way the stream scores (JPEG frames)
    received = [decode_image(encode_image(f.image)) for f in _frames(N, seed=11)]
    expected = _robust_tail([r.score for r in build_detector(encoder=encoder).score_batch(
        received, MemoryBank.load(built.path))])
    bank_time = Calibration.from_dict(built.calibration)
    off = manager.with_calibration("washer", replace(bank_time, threshold=OFF * expected))  # v2, bank-time method
    defects = [f.image for f in _frames(8, seed=12, defect_rate=1.0)]
    later_normal = [f.image for f in _frames(6, seed=13)]
    repository = _repository(settings)
    swapped = threading.Event()

    def camera():  # normal parts at 10 frames/s (what a loaded 2-core host scores) until 1 s after the swap
        line = SyntheticLine(product_classes=("washer",), defect_rate=0.0, seed=11)
        for _ in range(400):
            if swapped.wait(0) and time.monotonic() > swapped_at + 1.0:
                return
            yield line.next_frame().image, "normal"

    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        pipeline.wait_until_consuming()
        first: list = []
        publisher = threading.Thread(target=lambda: first.extend(_publish(settings, broker, camera(), fps=10)))
        started = time.monotonic()
        publisher.start()
        assert wait_for(lambda: repository.active_banks()["washer"].version != off.version, 60), (
            f"no self-calibrated version after {repository.count_inspections()} frames"
        )
        swapped_at = time.monotonic()
        swapped.set()
        publisher.join(30)
        _wait_rows(repository, len(first))
        assert pipeline.stats()["bank_swaps"] >= 1  # the stream swapped to it
        later = _publish(settings, broker, [(image, "defect") for image in defects]
                         + [(image, "normal") for image in later_normal])
        _wait_rows(repository, len(first) + len(later))
        refined = repository.active_banks()["washer"]
        manager.activate("washer", off.version)  # reversible; and the stream does not refine v2 again
        time.sleep(3 * settings.supervise_interval_s)
        assert repository.active_banks()["washer"].version == off.version
        assert pipeline.self_calibration.calibrated == [f"washer@v{refined.version}"]
        pipeline.stop()

    assert (refined.version, refined.calibration["method"], refined.calibration["source_version"]) == (
        3, STREAM_METHOD, off.version)
    rows = {r.frame_id: r for r in repository.iter_history()}
    by_off = [r.score for r in sorted(rows.values(), key=lambda r: r.id) if r.bank_version == off.version]
    print(f"self-calibrated after {len(by_off)} of {len(first)} frames scored by v2 "
          f"({swapped_at - started:.1f} s after the camera started)")
    assert N <= len(by_off) < len(first)  # refined after N frames, mid-stream: the rest met the new threshold
    threshold = refined.calibration["threshold"]
    tails = [_robust_tail(by_off[i:i + N]) for i in range(len(by_off) - N + 1)]
    assert min(abs(t - threshold) for t in tails) < 1e-6  # the robust tail of N consecutive stream scores
    assert threshold < 0.9 * off.calibration["threshold"]
    assert np.mean([score > threshold for score in by_off]) <= 0.03  # the normal frames sit below it

    later_rows = [rows[m.frame_id] for m in later]
    assert {r.bank_version for r in later_rows} == {refined.version}
    bad = [r for r, m in zip(later_rows, later, strict=True) if m.extra["kind"] == "defect"]
    good = [r for r, m in zip(later_rows, later, strict=True) if m.extra["kind"] == "normal"]
    caught = [r for r in bad if r.is_anomalous and r.score <= off.calibration["threshold"]]
    assert len(caught) >= 2, [r.score for r in bad]  # defects the threshold that was off would have missed
    assert np.mean([r.is_anomalous for r in bad]) >= 0.75
    assert sum(r.is_anomalous for r in good) <= 1

    banks = _app(settings, repository).get("/api/banks").json()["banks"]
    shown = {b["version"]: b for b in banks}[refined.version]
    assert (shown["calibration"]["method"], shown["calibration"]["source_version"]) == (STREAM_METHOD, 2)
    print(f"threshold {off.calibration['threshold']:.4f} -> {threshold:.4f}; defects {[round(r.score, 3) for r in bad]}")


def _cli(argv):
    """``linesight ARGV`` in this process; its log handler (on the test's captured stderr) removed after."""
    import logging

    from linesight.cli import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return main(argv)
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def _stamped(image):
    """A harmless print the references never showed (a date stamp on the part)."""
    out = image.copy()
    cv2.rectangle(out, (150, 20), (200, 40), (20, 20, 160), thickness=-1)
    return out


def test_a_false_alarm_marked_by_an_operator_stops_recurring_after_bank_learn(broker, ray_session, encoder,
                                                                            tmp_path, monkeypatch, capsys):
    from pipeline.services.banks import BankManager
    from pipeline.stream.job import Pipeline, wait_for
    from pipeline.stream.prepare import prepare
    from training.synthetic import normal_images

    settings = _settings(tmp_path, self_calibrate_after_frames=0)
    prepare(settings, broker.bootstrap_servers)
    BankManager(settings, encoder=encoder).build("washer", normal_images("washer", 2, seed=1), rotations=False)
    parts = [f.image for f in _frames(12, seed=21)]
    defects = [f.image for i, f in enumerate(_frames(12, seed=12, defect_rate=1.0)) if i in (0, 6, 7, 10)]
    repository = _repository(settings)
    client = _app(settings, repository)

    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        first = _publish(settings, broker, [(_stamped(image), "stamped") for image in parts[:3]]
                         + [(image, "normal") for image in parts[3:6]])
        _wait_rows(repository, len(first))
        rows = {r.frame_id: r for r in repository.iter_history()}
        stamped = [rows[m.frame_id] for m in first if m.extra["kind"] == "stamped"]
        assert all(r.is_anomalous for r in stamped), [r.score for r in stamped]  # the stamp is flagged
        assert not any(rows[m.frame_id].is_anomalous for m in first if m.extra["kind"] == "normal")

        marked = client.post(f"/api/inspections/{stamped[0].id}/feedback", json={"label": "false_alarm"},
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert marked.status_code == 200, marked.text
        monkeypatch.setenv("LINESIGHT_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("LINESIGHT_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("LINESIGHT_ENGINE", "torch")
        assert _cli(["bank", "learn", "--class", "washer"]) == 0
        learned = json.loads(capsys.readouterr().out)
        assert (learned["version"], learned["active"]) == (2, True)
        assert wait_for(lambda: pipeline.stats()["bank_swaps"] >= 1, 10)  # the stream swapped to v2

        second = _publish(settings, broker, [(_stamped(image), "stamped") for image in parts[6:9]]
                          + [(image, "defect") for image in defects] + [(image, "normal") for image in parts[9:]])
        _wait_rows(repository, len(first) + len(second))
        pipeline.stop()

    rows = {r.frame_id: r for r in repository.iter_history()}
    after = [(rows[m.frame_id], m.extra["kind"]) for m in second]
    assert {r.bank_version for r, _ in after} == {2}
    scores = {kind: [round(r.score, 3) for r, k in after if k == kind] for kind in ("stamped", "defect", "normal")}
    threshold = after[0][0].threshold
    assert not any(r.is_anomalous for r, kind in after if kind == "stamped"), (scores, threshold)  # stops recurring
    assert all(r.is_anomalous for r, kind in after if kind == "defect"), (scores, threshold)  # real defects still
    assert not any(r.is_anomalous for r, kind in after if kind == "normal"), (scores, threshold)
    assert max(scores["stamped"]) < min(r.score for r in stamped)
