"""pipeline/services/dialogue.py and ``linesight chat``: stored turns, continued across services, grounded answers, errors.

The LLM is a real tiny Llama folder (``settings.llm_path``) trained to answer "No, there is no
anomaly in the image." (tests/unit/pipeline/stream/test_verdicts.py); the encoder is the packaged one.
"""

from __future__ import annotations

import io

import pytest
import torch

from linesight.settings import load_settings
from tests.helpers import open_repository
from tests.unit.pipeline.stream.test_verdicts import NO_ANSWER, answering_llm, save_llm, store_inspection

FLAGGED_SENTENCE = "Yes, there is an anomaly in the image, at the top left of the image."

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llm_folder(tmp_path_factory):
    return save_llm(answering_llm(), tmp_path_factory.mktemp("answering-llm"))


@pytest.fixture
def settings(tmp_path, llm_folder):
    return load_settings(database_url=f"sqlite:///{tmp_path / 'l.db'}", data_dir=tmp_path, llm_path=llm_folder)


@pytest.fixture
def repository(settings):
    yield from open_repository(settings.database_url)


@pytest.fixture(scope="module")
def model(llm_folder):
    from pipeline.stream.verdicts import InspectionModel

    return InspectionModel.from_settings(load_settings(llm_path=llm_folder))  # loaded once for this module


@pytest.fixture
def service(settings, repository, model):
    from pipeline.services.dialogue import DialogueService

    return DialogueService(settings, repository, model=model)


def test_turns_are_stored_and_a_second_service_continues_the_conversation(settings, repository, service):
    from pipeline.services.dialogue import DialogueService

    row = store_inspection(repository, 1, flagged=False)
    first = service.ask(row.id, "Is there any anomaly in the image?")
    assert (first.answer, first.corrected) == (NO_ANSWER, False)
    second = service.ask(row.id, "  Where should I look?  ")
    assert [(t.turn_index, t.role, t.text) for t in second.turns] == [
        (0, "operator", "Is there any anomaly in the image?"), (1, "assistant", NO_ANSWER),
        (2, "operator", "Where should I look?"), (3, "assistant", second.answer)]

    later = DialogueService(settings)  # another session: its own repository on the same SQLite file
    conversation = later.conversation(row.id)
    (question_1, answer_1), (question_2, answer_2) = conversation.turns  # the first turn holds the image turn
    assert question_1.endswith("Is there any anomaly in the image?")
    assert answer_1 == NO_ANSWER
    assert (question_2, answer_2) == ("Where should I look?", second.answer)
    texts = "".join(span.text for span in conversation.build_input().spans)
    assert texts.endswith(
        f"Is there any anomaly in the image?\n### Assistant: {NO_ANSWER}\n### Human: Where should I look?"
        f"\n### Assistant: {second.answer}"
    )
    third = later.ask(row.id, "Is it safe to ship?")
    assert [t.turn_index for t in third.turns] == [0, 1, 2, 3, 4, 5]
    assert third.turns[:4] == second.turns
    assert [t.text for t in later.history(row.id)][-2:] == ["Is it safe to ship?", third.answer]


def test_the_llm_sees_the_stored_frame_map_and_facts(repository, service):
    from connectors.schema import decode_image
    from storage.records import map_from_png

    row = store_inspection(repository, 2, flagged=True)
    conversation = service.ask(row.id, "Is there any anomaly in the image?") and service.conversation(row.id)
    built = conversation.build_input()
    masks = repository.get_masks(row.id)
    model = service._model
    with torch.inference_mode():
        vector = model.encoder(model.encoder.preprocess([decode_image(masks.frame_image)])).global_vector[0]
    tokens = model.gpt.tokens(torch.from_numpy(map_from_png(masks.anomaly_map_png)), vector)
    spans = {span.kind: span for span in built.spans}
    image, prompt = spans["image"], spans["prompt"]
    assert torch.allclose(built.inputs_embeds[0, image.start : image.end], tokens.image_tokens[0], atol=1e-5)
    assert torch.allclose(built.inputs_embeds[0, prompt.start : prompt.end], tokens.prompt_tokens[0], atol=1e-5)
    description = next(span.text for span in built.spans if "inspection report says" in span.text)
    assert "This is a photo of brick" in description
    assert FLAGGED_SENTENCE in description


def test_an_answer_contradicting_the_detector_is_replaced_by_the_facts_answer(repository, service):
    row = store_inspection(repository, 3, flagged=True)
    reply = service.ask(row.id, "Is there any anomaly in the image?")  # the tiny LLM always says "No"
    assert (reply.llm_text, reply.source, reply.corrected) == (NO_ANSWER, "facts", True)
    assert reply.reason.startswith("contradicts the facts: says no anomaly for a flagged frame")
    assert reply.answer == f"{FLAGGED_SENTENCE} Score 0.90 against threshold 0.50 (1.80x the threshold): a clear anomaly."
    assert [(t.text, t.source) for t in reply.turns] == [
        ("Is there any anomaly in the image?", None), (reply.answer, "facts")]


def test_follow_up_questions_are_answered_from_the_stored_mask_and_score(repository, service):
    row = store_inspection(repository, 7, flagged=True)  # mask rows/cols 10..59 of 224: 50 x 50 px
    reply = service.ask(row.id, "Where is the defect and how big is it?")
    assert reply.source == "facts"  # the tiny LLM says "No, there is no anomaly" to everything
    assert reply.answer == (
        "The anomaly is at the top left (box x=10 y=10 w=50 h=50 px). "
        "It covers 2500 px, 5.0% of the 224x224 px frame (box 50x50 px)."
    )
    assert service.ask(row.id, "How many anomalies?").answer == "1 anomaly region, at the top left."


def test_a_question_stored_without_an_answer_is_not_replayed(repository, service):
    row = store_inspection(repository, 4, flagged=False)
    repository.add_chat_turn(row.id, "operator", "lost question")
    reply = service.ask(row.id, "Is there any anomaly in the image?")
    assert [t.turn_index for t in reply.turns] == [0, 1, 2]
    [(question, answer)] = service.conversation(row.id).turns
    assert "lost question" not in question
    assert answer == reply.answer


def test_bad_ids_and_questions_are_named(repository, service):
    from linesight.api.errors import status_for
    from pipeline.exceptions import InspectionNotFoundError, InvalidQuestionError

    row = store_inspection(repository, 5, flagged=False)
    with pytest.raises(InspectionNotFoundError, match="no inspection with id 999") as unknown:
        service.ask(999, "why?")
    with pytest.raises(InvalidQuestionError, match="must not be empty, got '   '") as empty:
        service.ask(row.id, "   ")
    with pytest.raises(InvalidQuestionError, match="is 2001 characters .* the limit is 2000"):
        service.ask(row.id, "x" * 2001)
    with pytest.raises(InvalidQuestionError, match="must be text, got int 5"):
        service.ask(row.id, 5)  # type: ignore[arg-type]
    assert (status_for(unknown.value), status_for(empty.value)) == (404, 400)
    assert repository.chat_turns(row.id) == []  # nothing stored for rejected questions


def test_chat_command_answers_one_question_and_runs_a_session(settings, repository, monkeypatch, capsys):
    from linesight.cli import main

    monkeypatch.setenv("LINESIGHT_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LINESIGHT_LLM_PATH", str(settings.llm_path))
    row = store_inspection(repository, 6, flagged=False)
    assert main(["chat", str(row.id), "Is there any anomaly in the image?"]) == 0
    assert capsys.readouterr().out.strip() == NO_ANSWER
    monkeypatch.setattr("sys.stdin", io.StringIO("Anything else?\n\nexit\n"))
    assert main(["chat", str(row.id)]) == 0
    out = capsys.readouterr().out
    assert out.index(f"assistant> {NO_ANSWER}") < out.index("(Ctrl-D or 'exit' to leave)")  # stored turns first
    assert out.count("assistant> ") + out.count("assistant (facts)> ") == 2
    assert "assistant (facts)> " in out  # "Anything else?": the tiny LLM's copy of its first answer is not shown
    assert [t.text for t in repository.chat_turns(row.id)][2] == "Anything else?"
    assert main(["chat", "424242"]) == 2
    assert capsys.readouterr().err.strip() == "linesight: error: no inspection with id 424242"


BRICK_LOOP = "The image is of a brick. The image is of a brick. The image is of a brick."


def looping_llm(text: str = BRICK_LOOP):
    """A tiny Llama whose next token depends only on the current one, wired to cycle through the tokens of
    ``text`` after the prompt's last token: the degenerate loop SmolLM2 produced in issue 12, made certain."""
    from model.anomalygpt import ASSISTANT
    from tests.unit.model.test_llm import tiny_llm

    llm = tiny_llm()
    model, size = llm.model, llm.hidden_size
    start = llm.token_ids(ASSISTANT)[-1]
    cycle = [t for t in dict.fromkeys(llm.token_ids(" " + text.split(". ")[0] + ".")) if t != start][: size - 1]
    with torch.no_grad():
        for layer in model.model.layers:  # the layers add nothing to the residual stream
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        table, head = model.get_input_embeddings().weight, model.lm_head.weight
        table.zero_()
        head.zero_()
        table[start, size - 1] = 1.0
        head[cycle[0], size - 1] = 10.0
        for index, token in enumerate(cycle):
            table[token, index] = 1.0
            head[cycle[(index + 1) % len(cycle)], index] = 10.0
    return llm


@pytest.fixture(scope="module")
def looping_llm_folder(tmp_path_factory):
    return save_llm(looping_llm(), tmp_path_factory.mktemp("looping-llm"))


def test_a_repeating_llm_answer_is_replaced_by_the_facts_answer(tmp_path, looping_llm_folder):
    from pipeline.services.dialogue import DialogueService
    from pipeline.stream.verdicts import InspectionModel

    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'loop.db'}", data_dir=tmp_path,
                             llm_path=looping_llm_folder, chat_repetition_penalty=1.0, chat_no_repeat_ngram_size=0)
    for repository in open_repository(settings.database_url):
        row = store_inspection(repository, 8, flagged=True)
        service = DialogueService(settings, repository, model=InspectionModel.from_settings(settings))
        reply = service.ask(row.id, "Where is the defect and how big is it?")
        assert reply.llm_text.count("brick.") >= 2  # the loop, as generated
        assert (reply.source, reply.reason) == ("facts", "repeats itself")
        assert reply.answer == (
            "The anomaly is at the top left (box x=10 y=10 w=50 h=50 px). "
            "It covers 2500 px, 5.0% of the 224x224 px frame (box 50x50 px)."
        )
        assert [(t.role, t.source) for t in repository.chat_turns(row.id)] == [("operator", None), ("assistant", "facts")]


def test_no_repeat_ngram_size_forbids_repeated_token_ngrams(looping_llm_folder):
    from model.llm import load_llm

    llm = load_llm(looping_llm_folder)
    prompt = llm.embed_text("### Human: Where is it?\n### Assistant:").unsqueeze(0)
    free = llm.generate_ids(prompt, max_new_tokens=40, stop_strings=())
    controlled = llm.generate_ids(prompt, max_new_tokens=40, stop_strings=(), no_repeat_ngram_size=3,
                                  repetition_penalty=1.3)

    def trigrams(ids):
        return [tuple(ids[i : i + 3]) for i in range(len(ids) - 2)]

    assert len(trigrams(free)) != len(set(trigrams(free)))  # the trained loop repeats itself...
    assert len(trigrams(controlled)) == len(set(trigrams(controlled)))  # ...not with repetition control
