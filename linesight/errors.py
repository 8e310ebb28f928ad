"""The root of every error linesight raises on purpose.

Each package has its own ``exceptions.py`` whose classes derive from :class:`LinesightError`;
the command line catches this root and prints its message on one line (no traceback).
Messages name the offending value, e.g. ``"--shots must be >= 1, got 0"``.
"""

__all__ = ["LinesightError", "ConfigError"]


class LinesightError(Exception):
    """Base class of all linesight errors; the message is meant for a person."""


class ConfigError(LinesightError):
    """A setting, flag or configuration value is invalid; the message names it and its value."""
