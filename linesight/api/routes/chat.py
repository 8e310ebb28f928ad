"""The operator's dialogue about one inspection (``pipeline.services.dialogue.DialogueService``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from linesight.api.auth import AUTH_RESPONSES, require_token
from linesight.api.context import ApiContext, get_context
from linesight.api.errors import ERROR_RESPONSES, ApiError
from linesight.api.routes.params import MAX_ID
from linesight.api.schemas import ChatAnswer, ChatQuestion, ChatTurns, turn_json

__all__ = ["router"]

router = APIRouter(prefix="/api/inspections", tags=["chat"], responses=ERROR_RESPONSES)

InspectionId = Annotated[int, Path(ge=1, le=MAX_ID, description="inspection id")]
_UNAVAILABLE = {503: {"description": "The dialogue model could not be loaded"}}


def _require_inspection(context: ApiContext, inspection_id: int) -> None:
    if context.repository.get_inspection(inspection_id) is None:
        raise ApiError(404, f"no inspection with id {inspection_id}")


@router.get("/{inspection_id}/chat", response_model=ChatTurns, summary="The dialogue so far")
def chat_turns(inspection_id: InspectionId, context: Annotated[ApiContext, Depends(get_context)]) -> dict[str, Any]:
    """Every stored turn about the inspection, in order."""
    _require_inspection(context, inspection_id)
    return {"turns": [turn_json(t) for t in context.repository.chat_turns(inspection_id)]}


@router.post(
    "/{inspection_id}/chat",
    response_model=ChatAnswer,
    dependencies=[Depends(require_token)],
    responses={**AUTH_RESPONSES, **_UNAVAILABLE},
    summary="Ask a question about the inspection",
)
def ask(
    inspection_id: InspectionId, body: ChatQuestion, context: Annotated[ApiContext, Depends(get_context)]
) -> dict[str, Any]:
    """Ask; the answer is grounded in the stored result's facts (regions, score, bank, line history).

    Returns the answer, its ``source`` (``llm``: the LLM's own text; ``facts``: the deterministic facts
    answer, given when the LLM's repeats itself, echoes the prompt or contradicts the facts) and the turns
    it added."""
    _require_inspection(context, inspection_id)
    service = context.dialogue()
    before = len(context.repository.chat_turns(inspection_id))
    reply = service.ask(inspection_id, body.question.strip())
    added = [turn_json(t) for t in reply.turns if t.turn_index >= before]
    return {"answer": reply.answer, "source": getattr(reply, "source", None), "turns": added}
