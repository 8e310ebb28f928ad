"""Errors of the pipeline package."""

from linesight.errors import ConfigError, LinesightError, UnavailableError
from storage.exceptions import NotFoundError

__all__ = [
    "PipelineError",
    "NoActiveBankError",
    "DialogueError",
    "InspectionNotFoundError",
    "InvalidQuestionError",
    "DialogueUnavailableError",
    "FAULT_KINDS",
    "InfrastructureFault",
    "BatchFailed",
    "CommitRefused",
    "BankUnavailableError",
]


class PipelineError(LinesightError):
    """The stream could not start, run or stop as asked; the message says which part and why."""


class NoActiveBankError(PipelineError):
    """A product class has no active memory bank (build one with `linesight bank build`)."""


# --- dialogue about stored inspections (pipeline/services/dialogue.py) ---------------------------------
# The HTTP API maps errors by category (linesight.errors): NotFoundError -> 404,
# ConfigError (an InvalidInputError) -> 400, UnavailableError -> 503; hence the second bases.


class DialogueError(PipelineError):
    """A question about a stored inspection could not be answered; the message names the value."""


class InspectionNotFoundError(DialogueError, NotFoundError):
    """No stored inspection has the id asked about."""


class InvalidQuestionError(DialogueError, ConfigError):
    """The operator's question is empty, too long or not text."""


class DialogueUnavailableError(DialogueError, UnavailableError):
    """The LLM, encoder or prompt learner needed for the dialogue could not be loaded."""


# --- faults of the stream (pipeline/stream/ingest.py): not the frame's fault vs the batch's ------------
FAULT_KINDS = (
    "database", "broker", "inference_actor", "sink_actor", "sink", "bank", "bank_lookup", "dead_letter",
    "dead_letter_ledger", "no_actor",
)


class InfrastructureFault(PipelineError):
    """Something other than the frame failed (database, broker, an actor, a bank file, the dead-letter topic).

    The ingest loop retries with backoff, stops polling meanwhile, never commits past it and never
    dead-letters a frame for it. ``kind`` is one of :data:`FAULT_KINDS`; ``actor_slot`` names the
    inference actor that died, when one did, and ``during_task`` says it died while running this
    attempt (not before: only such deaths count towards blaming a frame that kills actors).
    """

    def __init__(self, kind: str, detail: str, *, actor_slot: int | None = None, during_task: bool = True) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.actor_slot = actor_slot
        self.during_task = during_task


class BatchFailed(PipelineError):
    """Scoring or storing raised for this batch on a live actor: a frame in it may be a poison frame."""

    def __init__(self, detail: str, *, actor_slot: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.actor_slot = actor_slot


class CommitRefused(PipelineError):
    """The broker refused an offset commit after a rebalance: the partition's new owner replays it."""


class BankUnavailableError(PipelineError):
    """A bank version named by a task could not be loaded (file missing or unreadable): not the frame's fault."""
