"""The answer sentences of REFERENCE.md, and a parser for answers an LLM writes back.

- "No, there is no anomaly in the image."
- "Yes, there is an anomaly in the image, at the {pos} of the image."
- "Yes, there are 2 anomalies in the image, they are at the {p1} and {p2} of the image."
  (generalised: "... there are 3 anomalies ..., they are at the {p1}, {p2} and {p3} of the image.")
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from model.exceptions import ModelError
from model.positions import POSITION_NAMES

__all__ = ["NO_ANOMALY", "verdict_sentence", "parse_verdict"]

NO_ANOMALY = "No, there is no anomaly in the image."
# longest names first so "top left" wins over "top"
_POSITION_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(p) for p in sorted(POSITION_NAMES, key=len, reverse=True)) + r")\b"
)
_NO_PATTERN = re.compile(r"^\W*no\b|\bno anomal|\bnot? (?:any )?anomal|\bno defect|\bnormal\b", re.IGNORECASE)
_YES_PATTERN = re.compile(r"^\W*yes\b|\bthere (?:is|are) (?:an?|\d+|several|two|three) anomal", re.IGNORECASE)


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def verdict_sentence(positions: Sequence[str]) -> str:
    """The template sentence for these region positions (largest first); none means "No".

    >>> verdict_sentence(["top left", "center"])
    'Yes, there are 2 anomalies in the image, they are at the top left and center of the image.'
    """
    for name in positions:
        if name not in POSITION_NAMES:
            raise ModelError(f"unknown position {name!r}; expected one of {list(POSITION_NAMES)}")
    if not positions:
        return NO_ANOMALY
    if len(positions) == 1:
        return f"Yes, there is an anomaly in the image, at the {positions[0]} of the image."
    return (
        f"Yes, there are {len(positions)} anomalies in the image, they are at the {_join(list(positions))} of the image."
    )


def parse_verdict(text: str) -> tuple[bool, tuple[str, ...]]:
    """(is_anomalous, positions in order of mention) from an answer sentence; inverse of :func:`verdict_sentence`.

    Lenient for LLM output: case, extra words and a missing "of the image" are fine. A text that
    says neither yes nor no raises :class:`ModelError` quoting it.

    >>> parse_verdict("Yes, there is an anomaly in the image, at the bottom right of the image.")
    (True, ('bottom right',))
    """
    lowered = " ".join(text.lower().split())
    yes = _YES_PATTERN.search(lowered)
    no = _NO_PATTERN.search(lowered)
    if yes and (not no or yes.start() <= no.start()):
        return True, tuple(_POSITION_PATTERN.findall(lowered))
    if no:
        return False, ()
    raise ModelError(f"cannot tell yes or no from the answer {text[:200]!r}")
