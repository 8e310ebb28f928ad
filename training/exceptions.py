"""Errors of the training package; all derive from :class:`linesight.errors.LinesightError`."""

from linesight.errors import LinesightError

__all__ = ["TrainingError", "UnknownProductClassError", "DatasetError"]


class TrainingError(LinesightError):
    """Something about training data, a bank build or a training run is wrong."""


class UnknownProductClassError(TrainingError):
    """A product class is not one of the synthetic line's classes (the message lists them)."""


class DatasetError(TrainingError):
    """A dataset folder is missing or malformed (the message names the path)."""
