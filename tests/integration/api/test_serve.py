"""The API through real Ray Serve while the stream runs: inspect an image, build and hot-swap a bank.

One broker, one Ray (``ray_session``); Serve listens on a free port and is shut down afterwards.
"""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest
import requests

from linesight.settings import load_settings
from tests.unit.api.helpers import png_bytes

pytestmark = pytest.mark.integration

TOKEN = "serve-test-token"


@pytest.fixture(scope="module")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


def _settings(tmp_path):
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        frames_topic=f"frames-{tag}", alerts_topic=f"alerts-{tag}", dead_letter_topic=f"dlq-{tag}",
        consumer_group=f"group-{tag}", frames_partitions=1, database_url=f"sqlite:///{tmp_path / 'serve.db'}",
        data_dir=tmp_path, max_batch_size=8, batch_wait_timeout_s=0.02, bank_poll_interval_s=0.2, torch_threads=1,
    )


def _publish_until(settings, broker, stop: threading.Event, manifest: list, extra_after_stop: int = 30) -> None:
    """Brick frames at 25 fps until ``stop``, then ``extra_after_stop`` more."""
    from connectors.camera import CameraPublisher
    from connectors.kafka import make_producer
    from training.synthetic import SyntheticLine

    line = SyntheticLine(product_classes=("brick",), defect_rate=0.3, seed=11)

    def frames():
        left = extra_after_stop
        while left > 0:
            if stop.is_set():
                left -= 1
            frame = line.next_frame()
            yield "line-1", "cam-1", frame.product_class, frame.image, {}

    producer = make_producer(broker.bootstrap_servers, max_request_size=settings.max_frame_bytes)
    try:
        manifest.extend(CameraPublisher(producer, settings.frames_topic).publish(frames(), fps=25, count=600))
    finally:
        producer.close()


def _wait(predicate, timeout_s: float, what: str) -> None:
    from pipeline.stream.job import wait_for

    assert wait_for(predicate, timeout_s, interval_s=0.25), f"timed out after {timeout_s} s waiting for {what}"


def test_inspect_and_hot_swap_through_ray_serve_while_frames_stream(broker, ray_session, encoder, tmp_path):
    from connectors.tansu import free_port
    from linesight.api.deployment import start_serve, stop_serve
    from pipeline.services.banks import BankManager
    from pipeline.stream.job import Pipeline
    from pipeline.stream.prepare import prepare
    from storage.db import Database
    from storage.repository import Repository
    from training.synthetic import normal_images

    settings = _settings(tmp_path)
    prepare(settings, broker.bootstrap_servers)
    BankManager(settings, encoder=encoder).build("brick", normal_images("brick", 2, seed=1), rotations=True)
    repository = Repository(Database(settings.database_url))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    stop, manifest = threading.Event(), []
    publisher = threading.Thread(target=_publish_until, args=(settings, broker, stop, manifest))
    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        url = start_serve(settings, port=free_port(), token=TOKEN, bootstrap_servers=broker.bootstrap_servers,
                          expect_stream=True)
        try:
            publisher.start()
            _wait(lambda: repository.count_inspections() >= 16, 90, "the first stored frames")

            image = png_bytes(normal_images("brick", 1, seed=9)[0])
            first = requests.post(f"{url}/api/inspect", files={"image": ("b.png", image, "image/png")},
                                  data={"class": "brick"}, timeout=60)
            assert first.status_code == 200, first.text
            assert first.json()["bank_version"] == 1

            files = [("images", (f"n{i}.png", png_bytes(img), "image/png"))
                     for i, img in enumerate(normal_images("brick", 2, seed=5))]
            assert requests.post(f"{url}/api/banks/brick", files=files, timeout=60).status_code == 401
            built = requests.post(f"{url}/api/banks/brick", files=files, data={"activate": "false"}, headers=auth,
                                  timeout=120)
            assert built.status_code == 201, built.text
            assert built.json()["bank"]["key"] == "brick@v2"
            swapped = requests.post(f"{url}/api/banks/brick/2/activate", headers=auth, timeout=60)
            assert swapped.status_code == 200, swapped.text
            assert "running stream picks it up within 0.2 s" in swapped.json()["message"]

            second = requests.post(f"{url}/api/inspect", files={"image": ("b.png", image, "image/png")},
                                   data={"class": "brick"}, timeout=60)
            assert second.json()["bank_version"] == 2  # a new multiplexed id: the Inspector loaded v2
            assert abs(second.json()["threshold"] - first.json()["threshold"]) > 0

            _wait(lambda: any(r.bank_version == 2 for r in repository.history(limit=5)), 60, "frames scored by v2")
            stop.set()
            publisher.join(60)
            _wait(lambda: repository.count_inspections() >= len(manifest), 90, "every published frame")

            health = requests.get(f"{url}/healthz", timeout=30)
            assert health.status_code == 200, health.text
            assert health.json()["parts"]["stream"]["status"] == "ok"
            assert health.json()["parts"]["broker"]["status"] == "ok"
            _wait(lambda: "linesight_bank_swaps_total 1.0" in requests.get(f"{url}/metrics", timeout=30).text,
                  30, "the swap in /metrics")
            metrics = requests.get(f"{url}/metrics", timeout=30).text
            assert 'linesight_bank_frames_total{bank="brick@v2"}' in metrics
            page = requests.get(f"{url}/api/inspections", params={"limit": 3}, timeout=30).json()
            assert len(page["items"]) == 3
            assert page["next_cursor"] is not None
            assert requests.get(f"{url}/", timeout=30).text.startswith("<!doctype html>")
        finally:
            stop.set()
            stop_serve()
        pipeline.stop()

    rows = sorted(repository.iter_history(), key=lambda r: r.source_offset)  # one partition: stream order
    versions = [r.bank_version for r in rows]
    assert len(rows) == len(manifest) == len({r.frame_id for r in rows})
    assert versions[0] == 1
    assert versions[-1] == 2
    assert all(v == 2 for v in versions[versions.index(2):])  # swapped once, never back
    assert np.isfinite([r.score for r in rows]).all()
