"""AnomalyGPT answer sentences and a lenient parser of the LLM's free text.

REFERENCE.md answers: "No, there is no anomaly in the image." / "Yes, there is an anomaly in the
image, at the {pos} of the image." / "Yes, there are 2 anomalies in the image, they are at the
{p1} and {p2} of the image." Positions are the 3x3 grid names.

The parser reads what a small LLM actually writes (echoed questions, "The answer is: No.", extra
sentences): it finds the first sentence that states a decision, then the grid positions it names.
It also reads the templates exactly, so it can check an answer against the detector's facts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from model.verdict import verdict_sentence

__all__ = ["POSITIONS", "ParsedAnswer", "answer_agrees", "answer_sentence", "named_positions", "parse_answer"]

POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)

_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_POSITION_RE = re.compile(
    r"\b(top[ -]left|top[ -]right|bottom[ -]left|bottom[ -]right|upper[ -]left|upper[ -]right|lower[ -]left|"
    r"lower[ -]right|top|bottom|upper|lower|left|right|cent(?:er|re)|middle)\b"
)
_POSITION_ALIASES = {"upper": "top", "lower": "bottom", "centre": "center", "middle": "center"}
_QUESTION_RE = re.compile(r"is there any anomal(?:y|ies) in (?:the|this) image\??")
_NO_RE = re.compile(
    r"^(?:the answer is:?\s*)?no\b|there (?:is|are) no anomal|\bno anomal|\bnot anomalous|without (?:any )?anomal|"
    r"does not (?:have|contain|show) (?:any )?anomal"
)
_YES_RE = re.compile(
    r"^(?:the answer is:?\s*)?yes\b|there (?:is|are) (?:an?|one|\d+|two|three|four|five|six|seven|eight|nine) "
    r"anomal|\banomal(?:y|ies) (?:was |were )?(?:found|detected)|\b(?:has|contains|shows) (?:an? |\d+ )?anomal"
)


class ParsedAnswer(NamedTuple):
    """What an answer states; ``is_anomalous`` is None when no decision (or a contradictory one) is found."""

    is_anomalous: bool | None
    positions: tuple[str, ...]  # grid names in order of mention, no duplicates
    count: int | None  # "there are N anomalies" when stated
    sentence: str  # the sentence that carries the decision ("" when none)


def answer_sentence(positions: Sequence[str]) -> str:
    """REFERENCE.md's answer for the given positions (empty = no anomaly); the one template is
    :func:`model.verdict.verdict_sentence`, so the LLM is measured against the detector's own words.

    >>> answer_sentence(["top left", "bottom"])
    'Yes, there are 2 anomalies in the image, they are at the top left and bottom of the image.'
    """
    return verdict_sentence(positions)


def _positions(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for match in _POSITION_RE.finditer(text):
        words = match.group(1).replace("-", " ").split()
        name = " ".join(_POSITION_ALIASES.get(word, word) for word in words)
        if name in POSITIONS and name not in found:
            found.append(name)
    return tuple(found)


def named_positions(text: str) -> tuple[str, ...]:
    """Grid positions named anywhere in ``text`` (aliases read: upper/lower/middle), in order of mention.

    >>> named_positions("Upper-left corner and the middle")
    ('top left', 'center')
    """
    return _positions(text.lower())


def _count(text: str) -> int | None:
    match = re.search(r"there are (\d+|two|three|four|five|six|seven|eight|nine) anomalies", text)
    if match is None:
        return 1 if re.search(r"there is (?:an|one) anomaly", text) else None
    word = match.group(1)
    return int(word) if word.isdigit() else _NUMBER_WORDS[word]


def parse_answer(text: str) -> ParsedAnswer:
    """Read the decision, positions and count from free LLM text.

    >>> parse_answer("Yes, there is an anomaly in the image, at the top left of the image.").positions
    ('top left',)
    >>> parse_answer("Is there any anomaly in the image? The answer is: No.").is_anomalous
    False
    """
    cleaned = _QUESTION_RE.sub(" ", text.lower())
    sentences = [s.strip() for s in re.split(r"(?<=[.!?\n])\s+|\n+", cleaned) if s.strip()]
    for sentence in sentences:
        says_no, says_yes = bool(_NO_RE.search(sentence)), bool(_YES_RE.search(sentence))
        if says_no == says_yes:
            continue  # neither, or both in one sentence: look further
        return ParsedAnswer(says_yes, _positions(sentence) if says_yes else (), _count(sentence), sentence)
    return ParsedAnswer(None, (), None, "")


def answer_agrees(
    answer: ParsedAnswer, is_anomalous: bool, positions: Sequence[str], region_count: int | None = None
) -> bool:
    """True when ``answer`` states the detector's decision, exactly its positions and (if stated) its count.

    ``region_count`` defaults to the number of distinct positions.

    >>> answer_agrees(parse_answer("No, there is no anomaly in the image."), False, ())
    True
    >>> answer_agrees(parse_answer("Yes, there is an anomaly, at the top of the image."), True, ("left",))
    False
    """
    if answer.is_anomalous is None or answer.is_anomalous != is_anomalous:
        return False
    if not is_anomalous:
        return True
    expected_count = len(set(positions)) if region_count is None else region_count
    if answer.count is not None and answer.count != expected_count:
        return False
    return set(answer.positions) == set(positions)
