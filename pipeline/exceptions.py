"""Errors of the pipeline package."""

from linesight.errors import ConfigError, LinesightError
from storage.exceptions import NotFoundError

__all__ = [
    "PipelineError",
    "NoActiveBankError",
    "DialogueError",
    "InspectionNotFoundError",
    "InvalidQuestionError",
    "DialogueUnavailableError",
]


class PipelineError(LinesightError):
    """The stream could not start, run or stop as asked; the message says which part and why."""


class NoActiveBankError(PipelineError):
    """A product class has no active memory bank (build one with `linesight bank build`)."""


# --- dialogue about stored inspections (pipeline/dialogue.py) ---------------------------------
# The HTTP API maps errors by class name: *NotFoundError -> 404, ConfigError -> 400,
# DialogueUnavailableError -> 503 (linesight/api/errors.py), hence the second bases.


class DialogueError(PipelineError):
    """A question about a stored inspection could not be answered; the message names the value."""


class InspectionNotFoundError(DialogueError, NotFoundError):
    """No stored inspection has the id asked about."""


class InvalidQuestionError(DialogueError, ConfigError):
    """The operator's question is empty, too long or not text."""


class DialogueUnavailableError(DialogueError):
    """The LLM, encoder or prompt learner needed for the dialogue could not be loaded."""
