"""Errors of the model package; all derive from :class:`linesight.errors.LinesightError`."""

from linesight.errors import ConfigError, ConflictError, InvalidInputError, LinesightError

__all__ = ["ModelError", "BankBuildError", "BankFileError", "DefectError", "ClassNameError", "EncoderNotFoundError", "ShapeError"]


class ModelError(LinesightError):
    """Something about a model, its inputs or its weights is wrong."""


class BankFileError(ModelError, ConflictError):
    """A memory-bank file is missing, unreadable, or does not match the encoder (the message names the file)."""


class BankBuildError(ModelError, InvalidInputError):
    """A memory bank cannot be built from the given images (too few, wrong shapes); names the problem."""


class DefectError(ModelError):
    """A defect cannot be injected (unknown kind, bad image); the message names the value."""


class EncoderNotFoundError(ModelError):
    """An encoder name is unknown or its local folder is missing (the message says what to put where)."""


class ShapeError(ModelError, InvalidInputError):
    """An input tensor or image has the wrong shape (the message gives expected and actual)."""


class ClassNameError(ModelError, ConfigError, ValueError):
    """A product-class name breaks the rule of :mod:`model.names` (the message names the value).

    A ``ConfigError`` (the CLI prints one line, the API answers 400) and a ``ValueError`` (pydantic
    validators report it as a validation error).
    """
