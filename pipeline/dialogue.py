"""Multi-turn dialogue about a stored inspection, continued across sessions through SQL.

For every question the conversation is rebuilt from what is stored: the frame image goes through
the encoder (global vector -> E_img), the stored anomaly map through the prompt learner
(-> E_prompt), the detector's facts go into the description (REFERENCE.md order, see
model/anomalygpt.py), and the stored turns are replayed in order without generating them again.
The question and the answer are then stored with ``add_chat_turn``, so a later
:class:`DialogueService` (another process, the CLI, the HTTP API) continues the same conversation.

An answer that states a decision contradicting the detector (the 135M LLM does that,
ENVIRONMENT.md) is replaced by the detector's sentence and flagged ``corrected``.

>>> service = DialogueService(load_settings())  # doctest: +SKIP
>>> service.ask(42, "Is there any anomaly in the image?").answer  # doctest: +SKIP
'Yes, there is an anomaly in the image, at the top left of the image.'
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from linesight.settings import Settings
from model.anomalygpt import Conversation, DetectorFacts, facts_description
from pipeline.exceptions import (
    DialogueError,
    DialogueUnavailableError,
    InspectionNotFoundError,
    InvalidQuestionError,
    PipelineError,
)
from storage.rows import ChatTurnRow, InspectionRow

__all__ = ["ChatReply", "DialogueService"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatReply:
    """The answer to one question and the whole stored conversation after it (oldest turn first)."""

    answer: str
    turns: list[ChatTurnRow]
    corrected: bool = False  # the LLM contradicted the detector: ``answer`` is the detector's sentence


def _facts(row: InspectionRow) -> DetectorFacts:
    return DetectorFacts(
        is_anomalous=row.is_anomalous,
        positions=tuple(row.positions),
        region_count=row.region_count,
        product_class=row.product_class,
    )


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

    The model (LLM, encoder, prompt learner: :class:`pipeline.verdicts.InspectionModel`) loads on
    the first question; ``model`` may be given instead. Questions are answered one at a time.

    >>> reply = DialogueService(settings, repository).ask(7, "Where is the defect?")  # doctest: +SKIP
    >>> [(t.turn_index, t.role) for t in reply.turns]  # doctest: +SKIP
    [(0, 'operator'), (1, 'assistant')]
    """

    def __init__(self, settings: Settings, repository: Any | None = None, *, model: Any | None = None) -> None:
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
            conversation = self._conversation(row)
            try:
                text = conversation.ask(question)
            except DialogueError:
                raise
            except Exception as exc:  # ModelError: the context cannot hold the question
                raise InvalidQuestionError(
                    f"the question of {len(question)} characters cannot be answered about inspection "
                    f"{inspection_id}: {exc}"
                ) from None
            answer, corrected = self._grounded(row, text)
            self.repository.add_chat_turn(row.id, "operator", question)
            self.repository.add_chat_turn(row.id, "assistant", answer)
            turns = self.repository.chat_turns(row.id)
        return ChatReply(answer=answer, turns=turns, corrected=corrected)

    def history(self, inspection_id: int) -> list[ChatTurnRow]:
        """The stored turns of an inspection, in order (:class:`InspectionNotFoundError` if unknown)."""
        return self.repository.chat_turns(self._inspection(inspection_id).id)

    def conversation(self, inspection_id: int) -> Conversation:
        """The LLM conversation rebuilt from storage: image turn, facts and every stored turn replayed."""
        row = self._inspection(inspection_id)
        with self._lock:
            return self._conversation(row)

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
            from pipeline.verdicts import InspectionModel

            try:
                self._model = InspectionModel.from_settings(self.settings)
            except (ModelError, PipelineError, OSError) as exc:
                raise DialogueUnavailableError(f"the dialogue model could not be loaded: {exc}") from None
        return self._model

    def _conversation(self, row: InspectionRow) -> Conversation:
        model = self._loaded_model()
        masks = self.repository.get_masks(row.id)
        anomaly_map, global_vector = model.inputs(
            masks.frame_image if masks else None, masks.anomaly_map_png if masks else None
        )
        if global_vector is None:
            log.info("inspection %d has no stored frame image: the dialogue goes without E_img/E_prompt", row.id)
        tokens = model.gpt.tokens(anomaly_map, global_vector)
        image, prompt = (None, None) if tokens is None else (tokens.image_tokens, tokens.prompt_tokens)
        conversation = Conversation(
            model.llm,
            image,
            prompt,
            facts_description(_facts(row)),
            max_context_tokens=min(self.settings.chat_max_context_tokens, model.llm.max_positions),
            max_new_tokens=self.settings.chat_max_new_tokens,
        )
        for question, answer in _stored_pairs(self.repository.chat_turns(row.id)):
            conversation.replay(question, answer)
        return conversation

    @staticmethod
    def _grounded(row: InspectionRow, text: str) -> tuple[str, bool]:
        """The LLM's answer, or the detector's sentence when the answer is empty or contradicts it."""
        from model.answers import answer_agrees, answer_sentence, parse_answer

        template = answer_sentence(row.positions)
        text = text.strip()
        if not text:
            return template, True
        parsed = parse_answer(text)
        region_count = row.region_count if row.is_anomalous and row.region_count > 0 else None
        if parsed.is_anomalous is not None and not answer_agrees(parsed, row.is_anomalous, row.positions, region_count):
            log.info("inspection %d: the LLM answer %r contradicts the detector; answering %r", row.id, text, template)
            return template, True
        return text, False
