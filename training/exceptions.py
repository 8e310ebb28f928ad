"""Errors of the training package; all derive from :class:`linesight.errors.LinesightError`."""

from linesight.errors import InvalidInputError, LinesightError

__all__ = ["TrainingError", "UnknownProductClassError", "DefectError", "BankBuildError", "DatasetError"]


class TrainingError(LinesightError):
    """Something about training data, a bank build or a training run is wrong."""


class UnknownProductClassError(TrainingError):
    """A product class is not one of the synthetic line's classes (the message lists them)."""


class DefectError(TrainingError):
    """A defect cannot be injected (unknown kind, bad image); the message names the value."""


class BankBuildError(TrainingError, InvalidInputError):
    """A memory bank cannot be built from the given images (too few, wrong shapes); names the problem."""


class DatasetError(TrainingError):
    """A dataset folder is missing or malformed (the message names the path)."""
