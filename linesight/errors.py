"""The root of every error linesight raises on purpose, and the four error categories.

Each package has its own ``exceptions.py`` whose classes derive from :class:`LinesightError`;
the command line catches this root and prints its message on one line (no traceback).
Messages name the offending value, e.g. ``"--shots must be >= 1, got 0"``.

An error that a caller can act on also derives from one *category*, which carries the HTTP
status the API answers with (:func:`linesight.api.errors.status_for` maps by ``isinstance``,
so renaming a class never changes its status):

>>> [(c.__name__, c.http_status) for c in ERROR_CATEGORIES]
[('NotFoundError', 404), ('UnavailableError', 503), ('InvalidInputError', 400), ('ConflictError', 409)]
>>> issubclass(ConfigError, InvalidInputError)
True
"""

__all__ = [
    "LinesightError",
    "ConfigError",
    "NotFoundError",
    "InvalidInputError",
    "UnavailableError",
    "ConflictError",
    "ERROR_CATEGORIES",
]


class LinesightError(Exception):
    """Base class of all linesight errors; the message is meant for a person.

    ``http_status`` is 500 unless a category below says otherwise: an error with no category that
    reaches the API is a bug.
    """

    http_status: int = 500


class NotFoundError(LinesightError):
    """Something asked for by key (an inspection id, a bank version, a dead letter) does not exist."""

    http_status = 404


class InvalidInputError(LinesightError):
    """A value given by the caller is invalid; the message names it and what is expected."""

    http_status = 400


class UnavailableError(LinesightError):
    """A service needed to answer (database, broker, model) is down or cannot be loaded; retry later."""

    http_status = 503


class ConflictError(LinesightError):
    """The request is valid but conflicts with the stored state (e.g. a bank file that does not match)."""

    http_status = 409


# Checked in this order: an error deriving from two categories gets the first one's status.
ERROR_CATEGORIES: tuple[type[LinesightError], ...] = (
    NotFoundError, UnavailableError, InvalidInputError, ConflictError,
)


class ConfigError(InvalidInputError):
    """A setting, flag or configuration value is invalid; the message names it and its value."""
