"""model/anomalygpt.py and model/answers.py: LLM input order, verdicts, dialogue, answer parsing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from model.anomalygpt import (
    QUESTION,
    AnomalyGPT,
    Conversation,
    DetectorFacts,
    build_llm_input,
    default_description,
    facts_description,
)
from model.answers import POSITIONS, answer_agrees, answer_sentence, parse_answer
from model.exceptions import ModelError, ShapeError
from model.prompt_learner import PromptLearner
from tests.unit.model.test_llm import tiny_llm

GLOBAL = 16


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


@pytest.fixture(scope="module")
def gpt(llm) -> AnomalyGPT:
    torch.manual_seed(0)
    return AnomalyGPT(llm, PromptLearner(llm.hidden_size, GLOBAL, channels=(2, 4, 4, 8, 8)))


def test_llm_input_follows_the_reference_order(gpt, llm):
    tokens = gpt.tokens(torch.rand(224, 224), torch.randn(GLOBAL))
    assert tuple(tokens.prompt_tokens.shape) == (1, 18, llm.hidden_size)  # E_prompt: 18 tokens
    description = default_description("bottle")
    built = build_llm_input(llm, tokens.image_tokens, tokens.prompt_tokens, description)
    assert [span.kind for span in built.spans] == ["text", "image", "text", "prompt", "text", "text"]
    texts = [span.text for span in built.spans if span.kind == "text"]
    assert texts == ["### Human: <Img>", "</Img>", f" {description} {QUESTION}", "\n### Assistant:"]
    rows = built.inputs_embeds[0]
    assert rows.shape[0] == built.spans[-1].end
    assert built.spans[0].start == 0
    for span in built.spans:
        piece = rows[span.start : span.end]
        if span.kind == "text":
            assert torch.equal(piece, llm.embed_text(span.text))
        elif span.kind == "image":
            assert torch.equal(piece, tokens.image_tokens[0])
        else:
            assert torch.equal(piece, tokens.prompt_tokens[0])


def test_llm_input_without_image_tokens_and_with_bos():
    bos_llm = tiny_llm(add_bos=True)
    built = build_llm_input(bos_llm, None, None, "")
    assert [span.kind for span in built.spans] == ["bos", "text", "text", "text", "text"]
    assert torch.equal(built.inputs_embeds[0, 0], bos_llm.bos_embedding()[0])
    assert built.spans[3].text == f" {QUESTION}"


def test_spliced_tokens_must_have_the_llm_width(llm):
    with pytest.raises(ShapeError, match=r"image tokens must be \(N, 32\)"):
        build_llm_input(llm, torch.zeros(1, 7), None)
    with pytest.raises(ShapeError, match="hidden_size 64"):
        AnomalyGPT(llm, PromptLearner(64, GLOBAL, channels=(1, 1, 1, 1, 1)))


def test_ask_is_bounded_and_parsed(gpt):
    anomaly_map, vector = torch.rand(224, 224), torch.randn(GLOBAL)
    answer = gpt.ask(anomaly_map, vector, default_description(None), max_new_tokens=6)
    ids = gpt.llm.generate_ids(gpt.llm_input(anomaly_map, vector, default_description(None)).inputs_embeds, 6)
    assert 1 <= len(ids) <= 6
    assert answer.sentence == gpt.llm.generate(
        gpt.llm_input(anomaly_map, vector, default_description(None)).inputs_embeds, 6
    )
    assert answer == parse_answer(answer.sentence)._replace(sentence=answer.sentence)


def test_verdict_with_a_random_llm_falls_back_to_the_template(gpt):
    facts = DetectorFacts.from_score(
        SimpleNamespace(is_anomalous=True, positions=("top left",), region_count=1), product_class="screw"
    )
    result = gpt.verdict(facts, torch.rand(224, 224), torch.randn(GLOBAL), max_new_tokens=8)
    assert result.template == "Yes, there is an anomaly in the image, at the top left of the image."
    assert result.agrees == answer_agrees(parse_answer(result.text), True, ("top left",), 1)
    if not result.agrees:
        assert result.sentence == result.template


def test_facts_go_into_the_description():
    facts = DetectorFacts(True, ("left", "bottom right"), 2, "metal_nut")
    text = facts_description(facts)
    assert text.startswith("This is a photo of metal nut for anomaly detection.")
    assert text.endswith(answer_sentence(("left", "bottom right")))
    custom = facts_description(DetectorFacts(False, description="Brown leather."))
    assert custom == "Brown leather. The inspection report says: No, there is no anomaly in the image."


def test_conversation_grows_turn_by_turn(llm):
    chat = Conversation(llm, torch.randn(1, 32), torch.randn(18, 32), "A bottle.", max_new_tokens=4)
    first = chat.ask()
    length_one = chat.token_count()
    second = chat.ask("Where is it?")
    assert chat.turns == [(f"<Img></Img> A bottle. {QUESTION}", first), ("Where is it?", second)]
    built = chat.build_input()
    texts = [span.text for span in built.spans if span.kind == "text"]
    assert "### Human: Where is it?" in texts
    assert f" {first}" in texts
    assert [span.kind for span in built.spans].count("image") == 1
    assert chat.token_count() > length_one


def test_a_replayed_conversation_is_the_same_sequence_as_the_asked_one(llm):
    image, prompt = torch.randn(1, 32), torch.randn(18, 32)
    asked = Conversation(llm, image, prompt, "A bottle.", max_new_tokens=4)
    answers = [asked.ask(), asked.ask("Where is it?")]
    replayed = Conversation(llm, image, prompt, "A bottle.", max_new_tokens=4)
    replayed.replay("Is there any anomaly in the image?", answers[0])
    replayed.replay("Where is it?", answers[1])
    assert replayed.turns == asked.turns
    assert torch.equal(replayed.build_input().inputs_embeds, asked.build_input().inputs_embeds)
    assert replayed.ask("And now?") == asked.ask("And now?")


def test_conversation_drops_the_oldest_later_turns_but_keeps_the_image(llm):
    chat = Conversation(
        llm, torch.randn(1, 32), torch.randn(18, 32), "A bottle.", max_context_tokens=200, max_new_tokens=4
    )
    chat.ask()
    for index in range(8):
        chat.ask(f"Question number {index}, what about the top right of the image?")
        assert chat.token_count() + 4 <= 200
    assert chat.dropped_turns > 0
    assert chat.turns[0][0].endswith(QUESTION)
    assert chat.turns[-1][0].startswith("Question number 7")
    assert "image" in [span.kind for span in chat.build_input().spans]


def test_conversation_too_small_for_the_image_turn(llm):
    chat = Conversation(
        llm, torch.randn(1, 32), torch.randn(18, 32), "A bottle.", max_context_tokens=20, max_new_tokens=4
    )
    with pytest.raises(ModelError, match="max_context_tokens=20"):
        chat.ask()
    assert chat.turns == []
    with pytest.raises(ModelError, match="max_new_tokens"):
        Conversation(llm, max_context_tokens=8, max_new_tokens=8)


@pytest.mark.parametrize(
    ("text", "decision", "positions", "count"),
    [
        ("No, there is no anomaly in the image.", False, (), None),
        ("Yes, there is an anomaly in the image, at the top left of the image.", True, ("top left",), 1),
        (
            "Yes, there are 2 anomalies in the image, they are at the left and bottom right of the image.",
            True,
            ("left", "bottom right"),
            2,
        ),
        ("Is there any anomaly in the image? The answer is: No.", False, (), None),
        (
            "The image is a bottle. There are two anomalies, at the upper-left and the centre.",
            True,
            ("top left", "center"),
            2,
        ),
        (
            "This is a photo of bottle. The inspection report says: Yes, there is an anomaly in the image, at the "
            "right of the image.",
            True,
            ("right",),
            1,
        ),
        ("The image is a bottle, and the image is a bottle.", None, (), None),
        ("Yes and no, there is no anomaly.", None, (), None),
    ],
)
def test_parse_answer(text, decision, positions, count):
    parsed = parse_answer(text)
    assert (parsed.is_anomalous, parsed.positions, parsed.count) == (decision, positions, count)


def test_templates_round_trip_through_the_parser():
    for positions in [(), ("center",), ("top", "bottom left"), ("top right", "left", "bottom")]:
        sentence = answer_sentence(positions)
        parsed = parse_answer(sentence)
        assert answer_agrees(parsed, bool(positions), positions)
        assert parsed.positions == positions
    assert len(POSITIONS) == 9


def test_agreement_checks_decision_positions_and_count():
    yes_top = parse_answer("Yes, there is an anomaly in the image, at the top of the image.")
    assert answer_agrees(yes_top, True, ("top",))
    assert not answer_agrees(yes_top, False, ())
    assert not answer_agrees(yes_top, True, ("top", "left"))
    assert not answer_agrees(yes_top, True, ("top",), region_count=2)
    assert not answer_agrees(parse_answer("I am not sure."), False, ())


@pytest.mark.slow
def test_real_smollm2_verdicts(tmp_path_factory):
    """Builds the SmolLM2 cache once (dequantises the packaged GGUF), then asks for verdicts."""
    from model.llm import load_llm

    real = load_llm(cache_dir=tmp_path_factory.mktemp("llm-cache") / "smollm2")
    assert real.hidden_size == 576
    assert type(real.model).__name__ == "LlamaForCausalLM"
    gpt = AnomalyGPT(real)  # text-only: the detector's facts are in the description
    result = gpt.verdict(DetectorFacts(False, (), 0, "bottle"), max_new_tokens=40)
    assert result.agrees, result.text
    assert result.sentence == "No, there is no anomaly in the image."
    facts = DetectorFacts(True, ("bottom left", "top right"), 2, "bottle")
    other = gpt.verdict(facts, max_new_tokens=40)
    assert other.agrees == answer_agrees(parse_answer(other.text), True, facts.positions, 2)
    assert other.agrees or other.sentence == other.template
