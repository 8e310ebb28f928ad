"""Multi-turn dialogue about a stored inspection, continued across sessions through SQL.

For every question the conversation is rebuilt from what is stored: the frame image goes through
the encoder (global vector -> E_img), the stored anomaly map through the prompt learner
(-> E_prompt), the detector's facts go into the description (REFERENCE.md order, see
model/anomalygpt.py), and the stored turns are replayed in order without generating them again.
The question and the answer are then stored with ``add_chat_turn``, so a later
:class:`DialogueService` (another process, the CLI, the HTTP API) continues the same conversation.

The LLM is grounded: the description also carries the facts the system knows
(pipeline/services/inspection_facts.py: regions with boxes and areas, score vs threshold, bank and shots, the
line's recent history, the class's last false alarm), and it generates greedily with repetition
control (``chat_repetition_penalty``, ``chat_no_repeat_ngram_size``), stopping at the end of the first
answer (newline or ``###``). An answer that repeats itself, echoes the prompt, contradicts the facts or
does not state what was asked (:func:`model.grounding.degenerate_reason`) is not shown as the LLM's:
the deterministic facts answer (:func:`model.grounding.facts_answer`) is shown and stored instead, with
the turn's ``source`` = ``"facts"`` (``"llm"`` when the LLM's own text is shown).

>>> service = DialogueService(load_settings())  # doctest: +SKIP
>>> service.ask(42, "Is there any anomaly in the image?").answer  # doctest: +SKIP
'Yes, there is an anomaly in the image, at the top left of the image.'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from model.anomalygpt import Conversation, DetectorFacts, facts_description
from model.exceptions import ModelError
from model.grounding import InspectionFacts, degenerate_reason, facts_answer, facts_prompt
from pipeline.exceptions import (
    DialogueError,
    DialogueUnavailableError,
    InspectionNotFoundError,
    InvalidQuestionError,
    PipelineError,
)
from pipeline.stream.verdicts import ModelSettings
from storage.rows import ChatTurnRow, InspectionRow

__all__ = ["STOP_STRINGS", "ChatReply", "DialogueService", "answer_about_frame", "grounded_answer"]

log = logging.getLogger(__name__)


class DialogueSettings(ModelSettings, Protocol):
    """What the dialogue reads besides the model's settings (``linesight.settings.Settings`` has it all)."""

    database_url: str
    chat_history_window: int
    chat_max_question_chars: int
    chat_max_new_tokens: int
    chat_max_context_tokens: int
    chat_repetition_penalty: float
    chat_no_repeat_ngram_size: int


@dataclass(frozen=True)
class ChatReply:
    """The answer to one question and the whole stored conversation after it (oldest turn first)."""

    answer: str
    turns: list[ChatTurnRow]
    corrected: bool = False  # the LLM's text was not shown: ``answer`` is the facts answer
    source: str = "llm"  # "llm" (the LLM's own text) or "facts" (the facts answer)
    llm_text: str = ""  # what the LLM generated (shown or not)
    reason: str | None = None  # why the LLM's text was not shown (model.grounding.degenerate_reason)


def _facts(row: InspectionRow) -> DetectorFacts:
    return DetectorFacts(
        is_anomalous=row.is_anomalous,
        positions=tuple(row.positions),
        region_count=row.region_count,
        product_class=row.product_class,
    )


STOP_STRINGS = ("###", "\n", "Human:")


class _TunedLLM:
    """The LLM with the dialogue's generation options (repetition control, stop strings) for
    :class:`model.anomalygpt.Conversation`; everything else is the wrapped model's."""

    def __init__(self, llm: Any, *, repetition_penalty: float, no_repeat_ngram_size: int) -> None:
        self._llm = llm
        self._options = {"repetition_penalty": repetition_penalty, "no_repeat_ngram_size": no_repeat_ngram_size}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def generate(self, inputs_embeds: Any, max_new_tokens: int = 48, stop_strings: tuple[str, ...] = STOP_STRINGS) -> str:
        return self._llm.generate(inputs_embeds, max_new_tokens, STOP_STRINGS, **self._options)


def _stored_pairs(turns: list[ChatTurnRow]) -> list[tuple[str, str]]:
    """(question, answer) pairs in order; a question stored without an answer is left out."""
    pairs = []
    for index, turn in enumerate(turns[:-1]):
        following = turns[index + 1]
        if turn.role == "operator" and following.role == "assistant":
            pairs.append((turn.text, following.text))
    return pairs


class DialogueService:
    """Answers operators' questions about stored inspections (the HTTP API and ``linesight chat``).

    The model (LLM, encoder, prompt learner: :class:`pipeline.stream.verdicts.InspectionModel`) loads on
    the first question; ``model`` may be given instead. Questions are answered one at a time.

    >>> reply = DialogueService(settings, repository).ask(7, "Where is the defect?")  # doctest: +SKIP
    >>> [(t.turn_index, t.role) for t in reply.turns]  # doctest: +SKIP
    [(0, 'operator'), (1, 'assistant')]
    """

    def __init__(self, settings: DialogueSettings, repository: Any | None = None, *, model: Any | None = None) -> None:
        if repository is None:
            from storage.db import Database
            from storage.repository import Repository

            database = Database(settings.database_url)
            database.migrate()
            repository = Repository(database)
        self.settings = settings
        self.repository = repository
        self._model = model
        self._lock = threading.Lock()  # one question at a time: the model and the turn order

    # --- public contract ------------------------------------------------------------------------
    def ask(self, inspection_id: int, question: str) -> ChatReply:
        """Answer ``question`` about inspection ``inspection_id``; store both turns; return the reply.

        Raises :class:`InspectionNotFoundError` (unknown id), :class:`InvalidQuestionError` (empty,
        too long or not text) and :class:`DialogueUnavailableError` (the model cannot load).
        """
        question = self._checked_question(question)
        row = self._inspection(inspection_id)
        with self._lock:
            facts = self.facts(row)
            conversation = self._conversation(row, facts, question)
            try:
                text = conversation.ask(question)
            except DialogueError:
                raise
            except ModelError as exc:  # the context cannot hold the question: the facts still answer it
                log.info("inspection %d: no LLM answer (%s); answering from the facts", row.id, exc)
                text, overflow = "", f"no LLM answer: {exc}"
            else:
                overflow = None
            earlier = [t.text for t in self.repository.chat_turns(row.id) if t.role == "assistant"]
            answer, source, reason = grounded_answer(text, question, facts, earlier)
            reason = overflow or reason
            if reason is not None:
                log.info("inspection %d: LLM answer %r not shown (%s); facts answer %r", row.id, text, reason, answer)
            self.repository.add_chat_turn(row.id, "operator", question)
            self.repository.add_chat_turn(row.id, "assistant", answer, source=source)
            turns = self.repository.chat_turns(row.id)
        return ChatReply(answer=answer, turns=turns, corrected=source == "facts", source=source,
                         llm_text=text, reason=reason)

    def facts(self, row: InspectionRow) -> InspectionFacts:
        """What the system knows about a stored inspection (pipeline/services/inspection_facts.py)."""
        from pipeline.services.inspection_facts import stored_facts

        return stored_facts(self.repository, row, history_window=self.settings.chat_history_window)

    def history(self, inspection_id: int) -> list[ChatTurnRow]:
        """The stored turns of an inspection, in order (:class:`InspectionNotFoundError` if unknown)."""
        return self.repository.chat_turns(self._inspection(inspection_id).id)

    def conversation(self, inspection_id: int) -> Conversation:
        """The LLM conversation rebuilt from storage: image turn, facts and every stored turn replayed."""
        row = self._inspection(inspection_id)
        with self._lock:
            return self._conversation(row, self.facts(row), None)

    # --- internals ------------------------------------------------------------------------------
    def _checked_question(self, question: object) -> str:
        if not isinstance(question, str):
            raise InvalidQuestionError(f"the question must be text, got {type(question).__name__} {question!r}")
        text = question.strip()
        if not text:
            raise InvalidQuestionError(f"the question must not be empty, got {question!r}")
        limit = self.settings.chat_max_question_chars
        if len(text) > limit:
            raise InvalidQuestionError(
                f"the question is {len(text)} characters ({text[:40]!r}...), the limit is {limit} "
                "(chat_max_question_chars)"
            )
        return text

    def _inspection(self, inspection_id: int) -> InspectionRow:
        if isinstance(inspection_id, bool) or not isinstance(inspection_id, int):
            raise InspectionNotFoundError(f"no inspection with id {inspection_id!r}: ids are whole numbers")
        row = self.repository.get_inspection(inspection_id)
        if row is None:
            raise InspectionNotFoundError(f"no inspection with id {inspection_id}")
        return row

    def _loaded_model(self) -> Any:
        if self._model is None:
            from model.exceptions import ModelError
            from pipeline.stream.verdicts import InspectionModel

            try:
                self._model = InspectionModel.from_settings(self.settings)
            except (ModelError, PipelineError, OSError) as exc:
                raise DialogueUnavailableError(f"the dialogue model could not be loaded: {exc}") from None
        return self._model

    def _conversation(self, row: InspectionRow, facts: InspectionFacts, question: str | None) -> Conversation:
        model = self._loaded_model()
        masks = self.repository.get_masks(row.id)
        anomaly_map, global_vector = model.inputs(
            masks.frame_image if masks else None, masks.anomaly_map_png if masks else None, row.threshold
        )
        if global_vector is None:
            log.info("inspection %d has no stored frame image: the dialogue goes without E_img/E_prompt", row.id)
        tokens = model.gpt.tokens(anomaly_map, global_vector)
        image, prompt = (None, None) if tokens is None else (tokens.image_tokens, tokens.prompt_tokens)
        llm = _TunedLLM(
            model.llm,
            repetition_penalty=self.settings.chat_repetition_penalty,
            no_repeat_ngram_size=self.settings.chat_no_repeat_ngram_size,
        )
        conversation = Conversation(
            llm,
            image,
            prompt,
            f"{facts_description(_facts(row))} {facts_prompt(facts, question)}",
            max_context_tokens=min(self.settings.chat_max_context_tokens, model.llm.max_positions),
            max_new_tokens=self.settings.chat_max_new_tokens,
        )
        for question, answer in _stored_pairs(self.repository.chat_turns(row.id)):
            conversation.replay(question, answer)
        return conversation


def grounded_answer(
    text: str, question: str, facts: InspectionFacts, earlier_answers: Sequence[str] = ()
) -> tuple[str, str, str | None]:
    """(answer shown, source, reason): the LLM's ``text`` when it may be shown, else the facts answer.

    >>> grounded_answer("The image is of a brick. The image is of a brick.", "Where?", facts)[1:]  # doctest: +SKIP
    ('facts', 'repeats itself')
    """
    text = text.strip()
    reason = degenerate_reason(text, question, facts, earlier_answers)
    if reason is None:
        return text, "llm", None
    return facts_answer(facts, question), "facts", reason


def answer_about_frame(settings: DialogueSettings, image: Any, result: Any, product_class: str, question: str, *,
                       bank: Any | None = None, encoder: Any | None = None) -> ChatReply:
    """Answer one question about a frame scored now (``linesight inspect IMAGE --ask``); nothing is stored.

    ``image`` is the (H, W, 3) uint8 RGB frame, ``result`` its :class:`model.detector.FrameScore`. The LLM
    sees the frame (E_img), the map (E_prompt) and the facts; when it cannot load, or its answer is
    degenerate, the facts answer is given (``source="facts"``, ``reason`` says why).
    """
    import torch

    from model.exceptions import ModelError
    from model.prompt_learner import prompt_map
    from pipeline.services.inspection_facts import facts_from_score
    from pipeline.stream.verdicts import InspectionModel

    question = question.strip()
    if not question or len(question) > settings.chat_max_question_chars:
        raise InvalidQuestionError(
            f"the question must be 1..{settings.chat_max_question_chars} characters, got {len(question)}: "
            f"{question[:40]!r}"
        )
    facts = facts_from_score(result, product_class, bank_version=getattr(bank, "version", None),
                             bank_shots=getattr(bank, "shots", None))
    try:
        model = InspectionModel.from_settings(settings, encoder=encoder)
        with torch.inference_mode():
            vector = model.encoder(model.encoder.preprocess([image])).global_vector[0].float()
        tokens = model.gpt.tokens(prompt_map(result.anomaly_map, result.threshold), vector)
        llm = _TunedLLM(model.llm, repetition_penalty=settings.chat_repetition_penalty,
                        no_repeat_ngram_size=settings.chat_no_repeat_ngram_size)
        details = DetectorFacts(result.is_anomalous, tuple(result.positions), result.region_count, product_class)
        conversation = Conversation(
            llm, None if tokens is None else tokens.image_tokens, None if tokens is None else tokens.prompt_tokens,
            f"{facts_description(details)} {facts_prompt(facts, question)}",
            max_context_tokens=min(settings.chat_max_context_tokens, model.llm.max_positions),
            max_new_tokens=settings.chat_max_new_tokens,
        )
        text = conversation.ask(question)
    except (ModelError, PipelineError, OSError) as exc:
        log.warning("no LLM answer (%s): answering from the facts", exc)
        return ChatReply(answer=facts_answer(facts, question), turns=[], corrected=True, source="facts",
                         reason=f"no LLM answer: {exc}")
    answer, source, reason = grounded_answer(text, question, facts)
    return ChatReply(answer=answer, turns=[], corrected=source == "facts", source=source, llm_text=text, reason=reason)
