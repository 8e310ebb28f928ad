"""model/llm.py batched generation and model/anomalygpt.py verdict_batch: same text as one at a time."""

from __future__ import annotations

import re

import pytest
import torch

from model.anomalygpt import VERDICT_END, AnomalyGPT, DetectorFacts, facts_description
from model.exceptions import ModelError, ShapeError
from model.llm import TextStop
from model.prompt_learner import PromptLearner
from tests.unit.model.test_llm import tiny_llm

GLOBAL = 16
PROMPTS = (
    "### Human: Is there any anomaly in the image?\n### Assistant:",
    "### Human: <Img></Img> This is a photo of bottle for anomaly detection. Where is it?\n### Assistant:",
    "Where is it?",
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llm():
    return tiny_llm(seed=3)


@pytest.fixture(scope="module")
def gpt(llm) -> AnomalyGPT:
    torch.manual_seed(0)
    return AnomalyGPT(llm, PromptLearner(llm.hidden_size, GLOBAL, channels=(2, 4, 4, 8, 8)))


def test_a_batch_of_different_lengths_gives_each_prompt_its_plain_answer(llm):
    prompts = [llm.embed_text(text) for text in PROMPTS]  # 3 lengths: left padding is exercised
    plain_ids = [llm.generate_ids(p.unsqueeze(0), max_new_tokens=10) for p in prompts]
    assert llm.generate_batch_ids(prompts, max_new_tokens=10) == plain_ids
    assert llm.generate_batch(prompts, max_new_tokens=10) == [llm.generate(p.unsqueeze(0), 10) for p in prompts]


def test_each_row_stops_by_itself_at_the_stop_pattern(llm):
    prompts = [llm.embed_text(text) for text in PROMPTS]
    pattern = re.compile(r"\w{4}")  # a 4-letter word: reached after a different number of tokens per row
    plain = [llm.generate_ids(p.unsqueeze(0), max_new_tokens=16, stop_pattern=pattern) for p in prompts]
    batched = llm.generate_batch_ids(prompts, max_new_tokens=16, stop_pattern=pattern)
    assert batched == plain
    texts = llm.generate_batch(prompts, max_new_tokens=16, stop_pattern=pattern)
    assert texts == [llm.generate(p.unsqueeze(0), 16, stop_pattern=pattern) for p in prompts]
    for ids, text in zip(batched, texts, strict=True):
        if len(ids) < 16:  # stopped early: the text ends where the pattern's first match ends
            assert pattern.search(text) is not None
            assert text.endswith(pattern.search(text).group(0))


def test_the_stop_pattern_cuts_the_plain_text_after_its_first_match(llm):
    prompt = llm.embed_text(PROMPTS[0]).unsqueeze(0)
    free = llm.generate(prompt, max_new_tokens=16)
    assert free  # the tiny random model writes something
    stopped_ids = llm.generate_ids(prompt, max_new_tokens=16, stop_pattern=re.compile(r"\S"))
    assert len(stopped_ids) <= len(llm.generate_ids(prompt, max_new_tokens=16))
    assert llm.generate(prompt, max_new_tokens=16, stop_pattern=re.compile(r"\S")) == free[0]


def test_text_stop_records_where_each_row_stopped(llm):
    stop = TextStop(llm.tokenizer, 2, stop_strings=("###",))
    stopping, running = llm.token_ids("### Human"), llm.token_ids("bottle bottle bottle bottle")
    width = min(len(stopping), len(running))
    assert "###" in llm.tokenizer.decode(stopping[:width])
    ids = torch.tensor([stopping[:width], running[:width]])
    assert stop(ids, None).tolist() == [True, False]
    assert stop.stopped_at == [ids.shape[1], None]


def test_generate_batch_rejects_bad_prompts(llm):
    assert llm.generate_batch_ids([]) == []
    with pytest.raises(ShapeError, match=r"\(2, 3, 32\)"):
        llm.generate_batch([torch.zeros(2, 3, 32)])
    with pytest.raises(ShapeError, match=r"\(3, 8\)"):
        llm.generate_batch([torch.zeros(3, 8)])
    with pytest.raises(ModelError, match="max_new_tokens must be >= 1, got 0"):
        llm.generate_batch([torch.zeros(3, 32)], max_new_tokens=0)


def test_verdict_batch_equals_verdicts_one_at_a_time(gpt):
    facts = [
        DetectorFacts(True, ("top left",), 1, "bottle"),
        DetectorFacts(False, (), 0, "brick"),
        DetectorFacts(True, ("left", "bottom right"), 2, "washer"),
    ]
    maps = [torch.rand(224, 224), None, torch.rand(224, 224)]
    vectors = [torch.randn(GLOBAL), None, torch.randn(GLOBAL)]  # row 2 is text-only: a shorter prompt
    batched = gpt.verdict_batch(facts, maps, vectors, max_new_tokens=12)
    single = [gpt.verdict(f, m, v, max_new_tokens=12) for f, m, v in zip(facts, maps, vectors, strict=True)]
    assert batched == single
    assert [r.template for r in batched][1] == "No, there is no anomaly in the image."


def test_verdict_batch_needs_one_map_and_vector_per_facts(gpt):
    with pytest.raises(ModelError, match="got 2 facts, 1 maps, 2 vectors"):
        gpt.verdict_batch([DetectorFacts(False)] * 2, [None], [None, None])


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("The image is a photo of brick. The inspection report says: No, there is no anomaly in the image.\n\nThe",
         "No, there is no anomaly in the image."),
        ("Yes, there is an anomaly in the image, at the top left of the image. The image", "of the image."),
    ],
)
def test_verdict_end_is_the_end_of_the_decision_sentence(text, end):
    match = VERDICT_END.search(text)
    assert match is not None
    assert text[: match.end()].endswith(end)
    assert VERDICT_END.search("The image is a photo of brick. The inspection report says:") is None


def test_verdict_end_leaves_the_facts_sentence_whole():
    description = facts_description(DetectorFacts(True, ("center", "bottom right"), 2, "washer"))
    assert VERDICT_END.search(description).group(0).startswith("Yes, there are 2 anomalies")
