"""Errors of the pipeline package."""

from linesight.errors import LinesightError

__all__ = ["PipelineError", "NoActiveBankError"]


class PipelineError(LinesightError):
    """The stream could not start, run or stop as asked; the message says which part and why."""


class NoActiveBankError(PipelineError):
    """A product class has no active memory bank (build one with `linesight bank build`)."""
