"""One module per ``linesight`` sub-command; each exposes ``register(subparsers)``.

Helpers shared by commands live in ``_common.py`` (underscore: not a command).
"""
