"""pipeline/stream/verdicts.py: bounded queue and skips, agreement vs contradiction, counters, prompt learner files.

The LLM is the tiny random Llama of tests/unit/model/test_llm.py, trained here for a few dozen
steps to always answer "No, there is no anomaly in the image." (a real model with a controlled
answer): it agrees with the detector on normal frames and contradicts it on flagged ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from linesight.settings import load_settings
from model.llm import LanguageModel
from tests.helpers import open_repository

NO_ANSWER = "No, there is no anomaly in the image."
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def answering_llm(answer: str = NO_ANSWER, steps: int = 60, seed: int = 0) -> LanguageModel:
    """The tiny random Llama, trained (teacher forcing, varied image/prompt tokens and descriptions) to answer ``answer``."""
    from model.anomalygpt import DetectorFacts, build_llm_input, facts_description
    from tests.unit.model.test_llm import tiny_llm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and fair to a busy machine
    try:
        llm = tiny_llm(seed)
        target = torch.tensor(llm.token_ids(" " + answer) + [llm.tokenizer.eos_token_id])
        facts = [
            DetectorFacts(False, product_class="bottle"),
            DetectorFacts(True, ("top left",), 1, "brick"),
            DetectorFacts(True, ("left", "bottom right"), 2, None),
        ]
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(llm.model.parameters(), lr=1e-2)
        llm.model.train().requires_grad_(True)
        table = llm.model.get_input_embeddings()
        for step in range(steps):
            scale = (0.02, 0.3, 1.0)[step % 3]
            image = torch.randn(1, llm.hidden_size, generator=generator) * scale
            prompt = torch.randn(18, llm.hidden_size, generator=generator) * scale
            description = facts_description(facts[step % 3]) if step % 2 else ""
            with torch.no_grad():
                prefix = build_llm_input(llm, image, prompt, description).inputs_embeds  # (1, T, D)
            embeds = torch.cat([prefix, table(target[:-1]).unsqueeze(0)], dim=1)
            logits = llm.model(inputs_embeds=embeds).logits[0, prefix.shape[1] - 1 :]
            loss = torch.nn.functional.cross_entropy(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        llm.model.eval().requires_grad_(False)
        return llm
    finally:
        torch.set_num_threads(threads)


def save_llm(llm: LanguageModel, folder: Path) -> Path:
    """A local LLM folder (``settings.llm_path``) holding ``llm``."""
    llm.model.save_pretrained(folder)
    llm.tokenizer.save_pretrained(folder)
    return folder


def frame_jpeg(seed: int = 0) -> bytes:
    from connectors.schema import encode_image
    from training.synthetic import normal_images

    return encode_image(normal_images("brick", 1, 224, seed=seed)[0])


def store_inspection(repository, index: int, *, flagged: bool, image: bytes | None = None):
    """Store one inspection (flagged: one region at the top left) and return its row."""
    from model.answers import answer_sentence
    from storage.records import InspectionRecord, png_from_map, png_from_mask

    heat = np.zeros((224, 224), np.float32)
    if flagged:
        heat[10:60, 10:60] = 0.9
    positions = ("top left",) if flagged else ()
    record = InspectionRecord(
        frame_id=f"f-{index}", line_id="line-1", camera_id="cam-1", product_class="brick",
        captured_at=T0 + timedelta(seconds=index), received_at=T0 + timedelta(seconds=index),
        scored_at=T0 + timedelta(seconds=index), score=0.9 if flagged else 0.1, threshold=0.5,
        is_anomalous=flagged, positions=positions, region_count=len(positions), verdict=answer_sentence(positions),
        bank_version=1, latency_ms=10.0, anomaly_map_png=png_from_map(heat), mask_png=png_from_mask(heat > 0.5),
        frame_image=image if image is not None else frame_jpeg(index),
    )
    repository.upsert_inspections([record])
    return repository.get_inspection_by_frame(record.frame_id)


def job_for(row, repository):
    from pipeline.stream.verdicts import VerdictJob

    masks = repository.get_masks(row.id)
    return VerdictJob(
        frame_id=row.frame_id, product_class=row.product_class, is_anomalous=row.is_anomalous,
        positions=row.positions, region_count=row.region_count, template=row.verdict,
        anomaly_map_png=masks.anomaly_map_png, image_bytes=masks.frame_image,
    )


@pytest.fixture(scope="module")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def model(encoder):
    from pipeline.stream.verdicts import InspectionModel

    return InspectionModel.from_settings(load_settings(), llm=answering_llm(), encoder=encoder)


@pytest.fixture
def settings(tmp_path):
    return load_settings(database_url=f"sqlite:///{tmp_path / 'l.db'}", data_dir=tmp_path, verdict_queue_size=2)


@pytest.fixture
def repository(settings):
    yield from open_repository(settings.database_url)


def test_submit_never_blocks_and_counts_what_does_not_fit(settings, repository, model):
    from pipeline.stream.verdicts import VerdictWorker

    rows = [store_inspection(repository, i, flagged=False) for i in range(5)]
    worker = VerdictWorker(settings, model=model, repository=repository, start=False)
    assert worker.submit([job_for(row, repository) for row in rows]) == 2  # verdict_queue_size=2
    counters = worker.counters()
    assert (counters["verdict_skipped"], counters["verdict_backlog"], counters["verdicts_submitted"]) == (3, 2, 2)
    assert worker.run_pending() == 2
    assert worker.counters()["verdict_backlog"] == 0
    sources = [repository.get_inspection(row.id).verdict_source for row in rows]
    assert sources == ["llm", "llm", "template", "template", "template"]  # skipped ones keep the template


def test_an_agreeing_answer_becomes_the_llm_verdict(settings, repository, model):
    from pipeline.stream.monitor import StreamMonitor
    from pipeline.stream.verdicts import VerdictWorker

    row = store_inspection(repository, 1, flagged=False)
    monitor = StreamMonitor()
    worker = VerdictWorker(settings, monitor, model=model, repository=repository, start=False)
    worker.submit([job_for(row, repository)])
    worker.run_pending()
    stored = repository.get_inspection(row.id)
    assert (stored.verdict, stored.verdict_source, stored.verdict_note) == (NO_ANSWER, "llm", None)
    stats = worker.stats()
    assert (stats["verdicts_written"], stats["verdicts_rejected"], stats["verdicts_failed"]) == (1, 0, 0)
    assert stats["tokens_generated"] > 0
    assert stats["tokens_per_s"] > 0
    assert stats["verdict_ms_p50"] > 0
    assert monitor.snapshot()["verdicts_written"] == 1


def test_a_contradiction_keeps_the_template_and_counts_a_rejection(settings, repository, model):
    from pipeline.stream.monitor import StreamMonitor
    from pipeline.stream.verdicts import VerdictWorker

    row = store_inspection(repository, 2, flagged=True)
    monitor = StreamMonitor()
    worker = VerdictWorker(settings, monitor, model=model, repository=repository, start=False)
    worker.submit([job_for(row, repository)])
    worker.run_pending()
    stored = repository.get_inspection(row.id)
    assert stored.verdict == "Yes, there is an anomaly in the image, at the top left of the image."
    assert stored.verdict_source == "template"
    assert stored.verdict_note == f"llm contradicted: {NO_ANSWER!r}"
    snapshot = monitor.snapshot()
    assert (snapshot["verdicts_rejected"], snapshot["verdicts_written"], snapshot["verdict_backlog"]) == (1, 0, 0)


def test_the_background_thread_drains_and_close_refuses_more(settings, repository, model):
    from pipeline.stream.monitor import StreamMonitor
    from pipeline.stream.verdicts import VerdictWorker

    rows = [store_inspection(repository, i, flagged=i == 0) for i in range(2)]
    monitor = StreamMonitor()
    worker = VerdictWorker(settings, monitor, model=model, repository=repository)
    assert worker.submit([job_for(row, repository) for row in rows]) == 2
    assert worker.wait_idle(60)
    final = worker.close(drain_timeout_s=5)
    assert (final["verdicts_written"], final["verdicts_rejected"]) == (1, 1)
    assert [entry["frame_id"] for entry in final["recent"]] == ["f-0", "f-1"]
    assert worker.submit([job_for(rows[0], repository)]) == 0
    assert worker.counters()["verdict_skipped"] == 1
    assert monitor.snapshot()["verdicts_rejected"] == 1


def test_a_failing_job_is_counted_and_the_next_one_still_runs(settings, repository, model):
    from dataclasses import replace

    from pipeline.stream.verdicts import VerdictWorker

    row = store_inspection(repository, 3, flagged=False)
    worker = VerdictWorker(settings, model=model, repository=repository, start=False)
    worker.submit([replace(job_for(row, repository), frame_id="never-stored"), job_for(row, repository)])
    worker.run_pending()
    counters = worker.counters()
    assert (counters["verdicts_failed"], counters["verdicts_written"]) == (1, 1)


def test_inputs_rebuild_the_map_and_the_global_vector_from_stored_bytes(repository, model, encoder):
    from connectors.schema import decode_image
    from storage.records import map_from_png

    row = store_inspection(repository, 4, flagged=True)
    masks = repository.get_masks(row.id)
    anomaly_map, vector = model.inputs(masks.frame_image, masks.anomaly_map_png)
    assert torch.equal(anomaly_map, torch.from_numpy(map_from_png(masks.anomaly_map_png)))
    with torch.inference_mode():
        expected = encoder(encoder.preprocess([decode_image(masks.frame_image)])).global_vector[0]
    assert torch.allclose(vector, expected)
    spans = model.gpt.llm_input(anomaly_map, vector, "facts").spans
    assert [span.kind for span in spans] == ["text", "image", "text", "prompt", "text", "text"]
    assert model.inputs(b"not an image", masks.anomaly_map_png)[1] is None


def test_normal_frames_are_sampled_deterministically():
    from pipeline.stream.verdicts import sample_normal

    ids = [f"frame-{i}" for i in range(20_000)]
    share = np.mean([sample_normal(i, 0.05) for i in ids])
    assert 0.04 < share < 0.06
    assert [sample_normal(i, 0.05) for i in ids[:200]] == [sample_normal(i, 0.05) for i in ids[:200]]
    assert not any(sample_normal(i, 0.0) for i in ids[:200])
    assert all(sample_normal(i, 1.0) for i in ids[:200])


def test_jobs_are_made_for_new_flagged_frames_and_sampled_normal_ones():
    from model.detector import FrameScore
    from pipeline.stream.messages import BankRef, FrameTask, ScoredFrame
    from pipeline.stream.sink import to_record
    from pipeline.stream.verdicts import verdict_jobs

    def scored(index: int, flagged: bool) -> ScoredFrame:
        task = FrameTask(
            frame_id=f"f-{index}", line_id="l", camera_id="c", product_class="brick", captured_at=T0, received_at=T0,
            image=np.zeros((8, 8, 3), np.uint8), image_bytes=b"jpeg", bank=BankRef("brick", 1, "b"), topic="t",
            partition=0, offset=index,
        )
        heat = np.full((16, 16), 0.9 if flagged else 0.1, np.float32)
        positions = ("center",) if flagged else ()
        result = FrameScore(0.9, 0.5, flagged, heat, (heat > 0.5).astype(np.uint8), positions, len(positions), "v")
        return ScoredFrame(task, result, T0)

    frames = [scored(0, True), scored(1, True), scored(2, False), scored(3, False)]
    records = [to_record(frame, T0) for frame in frames]
    jobs = verdict_jobs(frames, records, {"f-0", "f-2", "f-3"}, 1.0)  # f-1 was a replay: not inserted
    assert [job.frame_id for job in jobs] == ["f-0", "f-2", "f-3"]
    assert jobs[0].anomaly_map_png == records[0].anomaly_map_png
    assert jobs[0].image_bytes == b"jpeg"
    assert [job.frame_id for job in verdict_jobs(frames, records, {"f-0", "f-2", "f-3"}, 0.0)] == ["f-0"]


def test_the_prompt_learner_comes_from_checkpoint_dir(tmp_path, encoder):
    from model.prompt_learner import PromptLearner, save_prompt_learner
    from pipeline.exceptions import PipelineError
    from pipeline.stream.verdicts import PROMPT_LEARNER_FILE, InspectionModel
    from tests.unit.model.test_llm import tiny_llm

    llm = tiny_llm()
    torch.manual_seed(3)
    trained = PromptLearner(llm.hidden_size, encoder.global_dim, channels=(2, 2, 2, 2, 2))
    save_prompt_learner(trained, tmp_path / PROMPT_LEARNER_FILE)
    loaded = InspectionModel.from_settings(load_settings(checkpoint_dir=tmp_path), llm=llm, encoder=encoder)
    assert torch.equal(loaded.gpt.prompt_learner.base_prompts, trained.base_prompts)
    fresh = [InspectionModel.from_settings(load_settings(), llm=llm, encoder=encoder) for _ in range(2)]
    assert torch.equal(fresh[0].gpt.prompt_learner.base_prompts, fresh[1].gpt.prompt_learner.base_prompts)  # seeded
    with pytest.raises(PipelineError, match=f"'{tmp_path / 'empty'}' has no {PROMPT_LEARNER_FILE}"):
        InspectionModel.from_settings(load_settings(checkpoint_dir=tmp_path / "empty"), llm=llm, encoder=encoder)
    save_prompt_learner(PromptLearner(llm.hidden_size, 7, channels=(2, 2, 2, 2, 2)), tmp_path / PROMPT_LEARNER_FILE)
    with pytest.raises(PipelineError, match="maps 7-d image vectors to 32-d tokens, but the encoder gives 192-d"):
        InspectionModel.from_settings(load_settings(checkpoint_dir=tmp_path), llm=llm, encoder=encoder)
