"""Errors of the storage package; all derive from :class:`linesight.errors.LinesightError`."""

from linesight.errors import InvalidInputError, LinesightError, UnavailableError
from linesight.errors import NotFoundError as _NotFoundCategory

__all__ = [
    "StorageError",
    "DatabaseUnavailableError",
    "MigrationError",
    "DatabaseMissingError",
    "InvalidRecordError",
    "NotFoundError",
]


class StorageError(LinesightError):
    """A database operation failed; the message names the (password-masked) URL or the bad value."""


class DatabaseUnavailableError(StorageError, UnavailableError):
    """The URL is malformed, its driver is missing, or the server does not answer."""


class MigrationError(StorageError):
    """Bringing the schema to the current revision failed."""


class DatabaseMissingError(StorageError):
    """A read-only command found no linesight database (no file, empty, or an older schema); says how to make one."""


class InvalidRecordError(StorageError, InvalidInputError):
    """A record handed to the repository is invalid (e.g. a naive timestamp); the message names the field."""


class NotFoundError(StorageError, _NotFoundCategory):
    """A row asked for by key does not exist (e.g. an unknown bank class/version)."""
