"""The product-class name rule, in one place (pure: no I/O, no heavy imports).

A class name travels into Kafka headers, SQL rows, URLs and bank file paths
(``<banks_dir>/<class>/v<N>.safetensors``), so the rule is strict: 1-64 characters of
letters, digits, ``_``, ``-``, ``.`` and ``:``, never starting with ``.`` (so never ``.`` or
``..``), and no path separator anywhere. :func:`check_class_name` is used by the frame headers
schema, the settings, the command line, the HTTP API and the bank registry.

>>> check_class_name("washer-m8")
'washer-m8'
>>> check_class_name("..")
Traceback (most recent call last):
...
model.exceptions.ClassNameError: invalid product class '..': use 1-64 letters, digits, '_', '-', '.' or ':', not starting with '.' (so never '.' or '..'), no '/' or '\\'
"""

from __future__ import annotations

import re

from linesight.errors import ConfigError
from model.exceptions import ClassNameError

__all__ = [
    "CLASS_NAME_MAX_CHARS", "CLASS_NAME_PATTERN", "CLASS_NAME_RULE", "bank_key", "check_class_name", "is_class_name",
    "parse_bank_key",
]

CLASS_NAME_MAX_CHARS = 64
# No look-ahead, so the same pattern also works in pydantic's Rust regex engine (OpenAPI docs).
CLASS_NAME_PATTERN = r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,63}$"
CLASS_NAME_RULE = (
    "use 1-64 letters, digits, '_', '-', '.' or ':', not starting with '.' (so never '.' or '..'), no '/' or '\\'"
)
_COMPILED = re.compile(CLASS_NAME_PATTERN)


def is_class_name(value: object) -> bool:
    """True when ``value`` is a str that follows the rule."""
    return isinstance(value, str) and _COMPILED.fullmatch(value) is not None


def check_class_name(value: object) -> str:
    """``value`` when it follows the rule, else :class:`ClassNameError` naming it (at most 80 chars shown).

    ``ClassNameError`` is a ``ConfigError`` (CLI: one line, exit 2; API: 400) and a ``ValueError``
    (pydantic validators turn it into a validation error).
    """
    if is_class_name(value):
        return value  # type: ignore[return-value]
    shown = repr(value[:80] + "...") if isinstance(value, str) and len(value) > 80 else repr(value)
    raise ClassNameError(f"invalid product class {shown}: {CLASS_NAME_RULE}")


def bank_key(product_class: str, version: int) -> str:
    """``class@vN``: the one key of a bank version (bank cache, Serve's multiplexed model id, counters, logs).

    >>> bank_key("brick", 3)
    'brick@v3'
    """
    return f"{product_class}@v{version}"


def parse_bank_key(key: str) -> tuple[str, int]:
    """``("class", N)`` from ``class@vN``; :class:`~linesight.errors.ConfigError` naming a malformed key.

    >>> parse_bank_key("brick@v3")
    ('brick', 3)
    >>> parse_bank_key("brick@3")
    Traceback (most recent call last):
    ...
    linesight.errors.ConfigError: malformed bank key 'brick@3': expected 'class@vN'
    """
    product_class, sep, version = key.rpartition("@v")
    if not sep or not product_class or not version.isdigit():
        raise ConfigError(f"malformed bank key {key!r}: expected 'class@vN'")
    return product_class, int(version)
