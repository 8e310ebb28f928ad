"""pipeline/stream/verdicts.py keeping up (issue 10): flagged first, batches, text-only prompts, reused answers.

Same real parts as tests/unit/pipeline/stream/test_verdicts.py: a tiny Llama trained to answer "No, there
is no anomaly in the image." (agrees on normal frames, contradicts flagged ones), the packaged
encoder and a SQLite repository.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from linesight.settings import load_settings
from tests.helpers import open_repository
from tests.unit.pipeline.stream.test_verdicts import NO_ANSWER, answering_llm, job_for, store_inspection

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def llm():
    return answering_llm()


def make_model(llm, encoder, **settings):
    from pipeline.stream.verdicts import InspectionModel

    return InspectionModel.from_settings(load_settings(**settings), llm=llm, encoder=encoder)


@pytest.fixture
def repository(tmp_path):
    yield from open_repository(f"sqlite:///{tmp_path / 'l.db'}")


def worker_for(tmp_path, model, repository, **settings):
    from pipeline.stream.verdicts import VerdictWorker

    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'l.db'}", data_dir=tmp_path, **settings)
    return VerdictWorker(settings, model=model, repository=repository, start=False)


def test_a_flagged_job_pushes_out_a_normal_sample_when_the_queue_is_full(tmp_path, repository, llm, encoder):
    rows = [store_inspection(repository, i, flagged=i >= 2) for i in range(6)]  # f-0, f-1 normal; f-2.. flagged
    jobs = [job_for(row, repository) for row in rows]
    worker = worker_for(tmp_path, make_model(llm, encoder), repository, verdict_queue_size=2)
    assert worker.submit(jobs[:2]) == 2
    assert worker.submit([jobs[2]]) == 1  # f-1 (the newest normal one) makes room
    assert worker.submit([jobs[3]]) == 1  # f-0 makes room
    assert worker.submit([jobs[4], jobs[0]]) == 0  # full of flagged: nothing more fits
    counters = worker.counters()
    assert (counters["verdicts_submitted"], counters["verdict_skipped"], counters["verdict_backlog"]) == (4, 4, 2)
    assert worker.run_pending() == 2
    sources = {row.frame_id: repository.get_inspection(row.id).verdict_note is not None for row in rows}
    assert sources == {"f-0": False, "f-1": False, "f-2": True, "f-3": True, "f-4": False, "f-5": False}


def test_batches_answer_every_job_and_text_only_answers_are_reused(tmp_path, repository, llm, encoder):
    model = make_model(llm, encoder)  # by default verdicts leave E_img out (LINESIGHT_VERDICT_IMAGE_TOKENS)
    assert model.verdict_image_tokens is False
    rows = [store_inspection(repository, i, flagged=i < 3) for i in range(5)]  # same facts per kind
    worker = worker_for(tmp_path, model, repository, verdict_batch_size=4)
    assert worker.submit([job_for(row, repository) for row in rows]) == 5
    assert worker.run_pending() == 5
    stats = worker.stats()
    assert (stats["verdicts_written"], stats["verdicts_rejected"], stats["verdicts_failed"]) == (2, 3, 0)
    assert stats["verdicts_reused"] == 3  # 2 distinct facts generated, 3 answers reused
    assert stats["tokens_generated"] == 2 * len(llm.token_ids(NO_ANSWER))
    assert stats["verdict_backlog"] == 0
    stored = [repository.get_inspection(row.id) for row in rows]
    assert [s.verdict_source for s in stored] == ["template"] * 3 + ["llm"] * 2
    assert all(s.verdict == NO_ANSWER for s in stored[3:])


def test_with_image_tokens_every_frame_is_generated(tmp_path, repository, llm, encoder):
    model = make_model(llm, encoder, verdict_image_tokens=True)
    rows = [store_inspection(repository, i, flagged=False) for i in range(3)]
    worker = worker_for(tmp_path, model, repository, verdict_batch_size=2)
    worker.submit([job_for(row, repository) for row in rows])
    assert worker.run_pending() == 3
    stats = worker.stats()
    assert (stats["verdicts_written"], stats["verdicts_reused"]) == (3, 0)
    assert stats["tokens_generated"] == 3 * len(llm.token_ids(NO_ANSWER))


def test_a_bad_job_in_a_batch_fails_alone(tmp_path, repository, llm, encoder):
    model = make_model(llm, encoder, verdict_image_tokens=True)  # the map PNG is decoded
    rows = [store_inspection(repository, i, flagged=False) for i in range(3)]
    jobs = [job_for(row, repository) for row in rows]
    jobs[1] = replace(jobs[1], anomaly_map_png=b"not a png")
    worker = worker_for(tmp_path, model, repository, verdict_batch_size=3)
    worker.submit(jobs)
    assert worker.run_pending() == 3
    counters = worker.counters()
    assert (counters["verdicts_written"], counters["verdicts_failed"], counters["verdict_backlog"]) == (2, 1, 0)


def test_verdict_image_tokens_are_off_unless_set_even_with_a_trained_checkpoint(tmp_path, encoder):
    from model.prompt_learner import PromptLearner, save_prompt_learner
    from pipeline.stream.verdicts import PROMPT_LEARNER_FILE
    from tests.unit.model.test_llm import tiny_llm

    tiny = tiny_llm()
    torch.manual_seed(3)
    save_prompt_learner(
        PromptLearner(tiny.hidden_size, encoder.global_dim, channels=(2, 2, 2, 2, 2)), tmp_path / PROMPT_LEARNER_FILE
    )
    assert make_model(tiny, encoder).verdict_image_tokens is False
    assert make_model(tiny, encoder, checkpoint_dir=tmp_path).verdict_image_tokens is False
    assert make_model(tiny, encoder, checkpoint_dir=tmp_path, verdict_image_tokens=True).verdict_image_tokens is True
    assert make_model(tiny, encoder, checkpoint_dir=tmp_path, verdict_image_tokens=False).verdict_image_tokens is False
    assert make_model(tiny, encoder, verdict_image_tokens=True).verdict_image_tokens is True
    text_only = make_model(tiny, encoder)
    assert text_only.verdict_inputs(b"\xff\xd8", b"\x89PNG") == (None, None)  # nothing decoded at all


def test_warm_up_answers_the_commonest_facts_once_for_every_class(tmp_path, repository, llm, encoder):
    rows = [store_inspection(repository, i, flagged=True) for i in range(2)]  # one region at the top left
    jobs = [job_for(rows[0], repository), replace(job_for(rows[1], repository), product_class="bottle")]
    worker = worker_for(tmp_path, make_model(llm, encoder), repository)
    assert worker.warm_up() == 10  # no anomaly + one region at each of the 9 positions
    assert worker.warm_up() == 0  # already known
    tokens = worker.stats()["tokens_generated"]
    assert tokens == 10 * len(llm.token_ids(NO_ANSWER))
    worker.submit(jobs)
    assert worker.run_pending() == 2
    stats = worker.stats()
    assert (stats["verdicts_reused"], stats["verdicts_rejected"], stats["tokens_generated"]) == (2, 2, tokens)
    assert stats["warm_up_s"] > 0


def test_no_warm_up_when_verdicts_carry_image_tokens(tmp_path, repository, llm, encoder):
    worker = worker_for(tmp_path, make_model(llm, encoder, verdict_image_tokens=True), repository)
    assert worker.warm_up() == 0
    assert worker.stats()["tokens_generated"] == 0
