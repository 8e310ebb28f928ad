"""Facts about one inspection, the operator's question intents, facts answers and the degenerate-answer check.

No model and no database here: :class:`InspectionFacts` is filled by ``pipeline/services/inspection_facts.py``
(stored row, mask regions, bank, line history, last false alarm) or by ``linesight inspect --ask``.

- :func:`question_intents` classifies a question: ``where``, ``how_big``, ``how_many``, ``how_sure``,
  ``what_changed``, ``false_alarm``, ``bank`` or ``other`` (several, in order of mention).
- :func:`facts_answer` is the deterministic answer composed from the facts (always correct).
- :func:`facts_prompt` is the facts block the LLM is given.
- :func:`degenerate_reason` says why an LLM answer must not be shown (repetition, echo, contradiction,
  missing facts), or None; :func:`states_facts` checks an answer states the facts an intent asks for.

>>> facts = InspectionFacts(1, "brick", "line-1", True, 0.9, 0.5, ("top left",), 1,
...                         (RegionFact("top left", 10, 10, 50, 50, 2500),), 224, 224)
>>> facts_answer(facts, "How many defects?")
'1 anomaly region, at the top left.'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "INTENTS",
    "InspectionFacts",
    "LineHistory",
    "PastInspection",
    "RegionFact",
    "degenerate_reason",
    "facts_answer",
    "facts_prompt",
    "contradicts",
    "echoes",
    "question_intents",
    "repeats_itself",
    "states_facts",
]

INTENTS = ("where", "how_big", "how_many", "how_sure", "what_changed", "false_alarm", "bank", "other")

_INTENT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("false_alarm", re.compile(r"false[ -]?alarm|false positive|like the last|same as (?:the )?last|seen (?:this|it) before")),
    ("what_changed", re.compile(r"chang|yesterday|trend|recent|lately|history|compared|more often|getting worse|usual")),
    ("how_many", re.compile(r"how many|number of|count|several|more than one|multiple")),
    ("how_big", re.compile(r"how big|how large|\bsize\b|\bbig\b|\blarge\b|\barea\b|how much of|extent|dimension|pixels?\b")),
    ("where", re.compile(r"\bwhere\b|which (?:corner|side|part|region)|position|locat|\bcorner\b|\bplace\b")),
    ("how_sure", re.compile(r"how sure|confiden|certain|\bsure\b|\bscore\b|threshold|margin|trust|reliab")),
    ("bank", re.compile(r"\bbank\b|\bshots?\b|reference (?:images|frames)|memory bank")),
)


@dataclass(frozen=True)
class RegionFact:
    """One anomaly region: grid position, bounding box (x, y from the frame's top left) and area, frame pixels."""

    position: str
    x_px: int
    y_px: int
    w_px: int
    h_px: int
    area_px: int


@dataclass(frozen=True)
class PastInspection:
    """An earlier inspection referred to by an answer (the class's last false alarm)."""

    inspection_id: int
    frame_id: str
    score: float
    threshold: float
    positions: tuple[str, ...]
    captured_at: datetime | None = None


@dataclass(frozen=True)
class LineHistory:
    """Flagged share of the line and class: the last ``window`` inspections, and the day before vs the day of."""

    window: int  # inspections counted (up to the requested N)
    flagged: int
    last_day_total: int  # the 24 h up to this inspection
    last_day_flagged: int
    day_before_total: int  # the 24 h before those
    day_before_flagged: int


@dataclass(frozen=True)
class InspectionFacts:
    """What the system knows about one inspection (scores, regions, bank, history)."""

    inspection_id: int | None
    product_class: str
    line_id: str | None
    is_anomalous: bool
    score: float
    threshold: float
    positions: tuple[str, ...]
    region_count: int
    regions: tuple[RegionFact, ...] = ()  # largest first, boxes in frame pixels
    frame_width_px: int = 0
    frame_height_px: int = 0
    bank_version: int | None = None
    bank_shots: int | None = None
    history: LineHistory | None = None
    last_false_alarm: PastInspection | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def frame_area_px(self) -> int:
        return self.frame_width_px * self.frame_height_px

    @property
    def total_area_px(self) -> int:
        return sum(r.area_px for r in self.regions)

    @property
    def score_ratio(self) -> float:
        """score / threshold (> 1 flagged); 0 for a zero threshold."""
        return self.score / self.threshold if self.threshold > 0 else 0.0


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole > 0 else "n/a"


def _share(flagged: int, total: int) -> str:
    return f"{flagged} of {total} ({_pct(flagged, total)})" if total else "none"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def question_intents(question: str) -> tuple[str, ...]:
    """The intents a question asks for, in order of first mention; ``("other",)`` when none.

    >>> question_intents("Where is the defect and how big is it?")
    ('where', 'how_big')
    """
    text = question.lower()
    found = []
    for intent, pattern in _INTENT_PATTERNS:
        match = pattern.search(text)
        if match is not None:
            found.append((match.start(), intent))
    return tuple(intent for _, intent in sorted(found)) or ("other",)


# --- facts answers -------------------------------------------------------------------------------
def _box(region: RegionFact) -> str:
    return f"box x={region.x_px} y={region.y_px} w={region.w_px} h={region.h_px} px"


def _where(f: InspectionFacts) -> str:
    if not f.is_anomalous:
        return "No anomaly was found in this frame, so there is nothing to locate."
    if f.region_count <= 1 or len(f.positions) <= 1:
        head = f"The anomaly is at the {f.positions[0] if f.positions else 'frame'}"
        return head + (f" ({_box(f.regions[0])})." if f.regions else ".")
    parts = [
        f"the {r.position} ({_box(r)})" for r in f.regions[: f.region_count]
    ] if len(f.regions) >= f.region_count else [f"the {p}" for p in f.positions]
    return f"There are {f.region_count} anomaly regions: at {_join(parts)}."


def _how_big(f: InspectionFacts) -> str:
    if not f.is_anomalous:
        return "No anomaly was found in this frame: there is no region to measure."
    if not f.regions:
        return "The region size is not stored for this inspection (no mask)."
    frame = f"the {f.frame_width_px}x{f.frame_height_px} px frame"
    if len(f.regions) == 1:
        r = f.regions[0]
        return f"It covers {r.area_px} px, {_pct(r.area_px, f.frame_area_px)} of {frame} (box {r.w_px}x{r.h_px} px)."
    each = [f"{r.area_px} px at the {r.position}" for r in f.regions]
    return (
        f"The regions cover {f.total_area_px} px in all, {_pct(f.total_area_px, f.frame_area_px)} of {frame}: "
        f"{_join(each)}."
    )


def _how_many(f: InspectionFacts) -> str:
    if not f.is_anomalous:
        return "No anomaly regions: the frame was judged normal."
    if f.region_count == 1:
        return f"1 anomaly region, at the {f.positions[0]}." if f.positions else "1 anomaly region."
    return f"{f.region_count} anomaly regions, at the {_join(list(f.positions))}."


def _how_sure(f: InspectionFacts) -> str:
    ratio = f.score_ratio
    head = f"Score {f.score:.2f} against threshold {f.threshold:.2f} ({ratio:.2f}x the threshold)"
    if f.is_anomalous:
        tail = "a clear anomaly" if ratio >= 1.5 else "flagged, but close to the threshold"
    else:
        tail = "clearly normal" if ratio <= 0.7 else "judged normal, but close to the threshold"
    return f"{head}: {tail}."


def _bank(f: InspectionFacts) -> str:
    if f.bank_version is None:
        return "The memory bank of this inspection is not recorded."
    shots = f" built from {f.bank_shots} normal shots" if f.bank_shots is not None else ""
    return f"Scored against the {f.product_class} memory bank v{f.bank_version}{shots}."


def _changed(f: InspectionFacts) -> str:
    h = f.history
    if h is None or h.window == 0:
        return f"There is no earlier inspection of {f.product_class} on this line to compare with."
    where = f"{f.line_id}, {f.product_class}" if f.line_id else f.product_class
    text = f"On {where}: {h.flagged} of the last {h.window} inspections were flagged ({_pct(h.flagged, h.window)})."
    if h.day_before_total:
        text += (
            f" Last 24 h: {_share(h.last_day_flagged, h.last_day_total)} flagged;"
            f" the 24 h before: {_share(h.day_before_flagged, h.day_before_total)}."
        )
    else:
        text += f" Last 24 h: {_share(h.last_day_flagged, h.last_day_total)} flagged; nothing stored the day before."
    return text


def _false_alarm(f: InspectionFacts) -> str:
    past = f.last_false_alarm
    if past is None:
        return f"No false alarm is recorded for {f.product_class}."
    where = f"at the {_join(list(past.positions))}" if past.positions else "with no stored position"
    text = (
        f"The last false alarm of {f.product_class} was inspection {past.inspection_id} "
        f"(score {past.score:.2f}, threshold {past.threshold:.2f}, {where})."
    )
    if not f.is_anomalous:
        return text + " This frame was not flagged."
    same = set(past.positions) & set(f.positions)
    if same:
        return text + f" This one is also at the {_join(sorted(same))}, score {f.score:.2f}: it may be alike."
    return text + f" This one is at the {_join(list(f.positions))}, score {f.score:.2f}: a different place."


def _other(f: InspectionFacts) -> str:
    from model.answers import answer_sentence

    return f"{answer_sentence(f.positions if f.is_anomalous else ())} {_how_sure(f)}"


_ANSWERS = {
    "where": _where, "how_big": _how_big, "how_many": _how_many, "how_sure": _how_sure,
    "what_changed": _changed, "false_alarm": _false_alarm, "bank": _bank, "other": _other,
}  # fmt: skip


def facts_answer(facts: InspectionFacts, question: str) -> str:
    """The deterministic answer to ``question`` composed from ``facts`` (one sentence per intent)."""
    return " ".join(_ANSWERS[intent](facts) for intent in question_intents(question))


def facts_prompt(facts: InspectionFacts, question: str | None = None) -> str:
    """The facts block given to the LLM: the decision and score, then the facts the question asks for
    (every fact when ``question`` is None). Short, so a small model's context holds it."""
    intents = question_intents(question) if question is not None else INTENTS
    lines = [f"Facts: {_other(facts)}"]
    lines += [_ANSWERS[i](facts) for i in intents if i not in ("other", "how_sure")]
    lines.append("Answer in one short sentence using these facts.")
    return " ".join(lines)


# --- checks on an answer -------------------------------------------------------------------------
_NUMBER_RE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_BOX_RE = re.compile(r"\b([xywh])\s*=\s*([^\s,)]*)")
_MARKERS = ("###", "human:", "assistant:", "<img>", "</img>", "facts:", "answer in one short sentence")


def _numbers(text: str) -> set[float]:
    return {float(n) for n in _NUMBER_RE.findall(text)}


def _fact_numbers(f: InspectionFacts) -> set[float]:
    """Every number a correct answer may state (the facts prompt's numbers, plus ordinals 1-9)."""
    from model.answers import answer_sentence

    texts = [facts_prompt(f), answer_sentence(f.positions), _how_sure(f), _how_big(f), _where(f)]
    return set().union(*(_numbers(t) for t in texts)) | {float(i) for i in range(1, 10)} | {24.0, 0.0}


def repeats_itself(answer: str, *, n: int = 4) -> bool:
    """True when a word ``n``-gram occurs twice (numbers aside), a sentence repeats, or one word is > 40% of
    >= 8 words."""
    # words of 2+ letters: numbers and box keys (x= y= w= h=) left out, facts may coincide ("1 of 2 ... 1 of 2")
    words = re.findall(r"[a-z]{2,}", answer.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) != len(set(grams)):
        return True
    sentences = [s.strip() for s in re.split(r"[.!?](?:\s+|$)|\n+", answer.lower()) if s.strip()]
    if len(sentences) != len(set(sentences)):
        return True
    return len(words) >= 8 and max(words.count(w) for w in set(words)) > 0.4 * len(words)


def echoes(answer: str, question: str) -> bool:
    """True when the answer repeats the question (>= 4 words of it in a row) or carries prompt markers."""
    low = answer.lower()
    if any(marker in low for marker in _MARKERS):
        return True
    q = re.findall(r"[a-z0-9]+", question.lower())
    a = " " + " ".join(re.findall(r"[a-z0-9]+", low)) + " "
    if len(q) >= 4 and " " + " ".join(q) + " " in a:
        return True
    return any(" " + " ".join(q[i : i + 5]) + " " in a for i in range(len(q) - 4))


def contradicts(answer: str, facts: InspectionFacts) -> str | None:
    """Why ``answer`` contradicts the facts (decision, positions, count, numbers), or None."""
    from model.answers import named_positions, parse_answer

    parsed = parse_answer(answer)
    if parsed.is_anomalous is not None and parsed.is_anomalous != facts.is_anomalous:
        return f"says {'an' if parsed.is_anomalous else 'no'} anomaly for a {'flagged' if facts.is_anomalous else 'normal'} frame"
    named = set(named_positions(answer))
    allowed = set(facts.positions) | (set(facts.last_false_alarm.positions) if facts.last_false_alarm else set())
    wrong = named - allowed
    if wrong and (facts.is_anomalous or parsed.is_anomalous):
        return f"names position(s) {sorted(wrong)} not in the facts {sorted(allowed)}"
    if parsed.count is not None and facts.is_anomalous and parsed.count != facts.region_count:
        return f"states {parsed.count} anomalies, the facts say {facts.region_count}"
    unknown = sorted(_numbers(answer) - _fact_numbers(facts))
    if unknown:
        return f"states number(s) {unknown} not in the facts"
    for key, value in _BOX_RE.findall(answer.lower()):
        allowed_values = {str(getattr(r, f"{key}_px")) for r in facts.regions}
        if value not in allowed_values:
            return f"states box {key}={value!r}, the facts' boxes have {key} in {sorted(allowed_values)}"
    return None


def states_facts(answer: str, facts: InspectionFacts, question: str) -> bool:
    """True when ``answer`` states, for every intent of ``question``, the key facts it asks for."""
    low = answer.lower()
    nums = _numbers(answer)

    def has(*values: float) -> bool:
        return all(any(abs(v - n) < 0.051 for n in nums) for v in values)

    for intent in question_intents(question):
        if intent == "where":
            ok = all(p in low for p in facts.positions) if facts.is_anomalous else "no anomaly" in low
        elif intent == "how_big":
            ok = (
                has(facts.total_area_px, round(100.0 * facts.total_area_px / facts.frame_area_px, 1))
                if facts.is_anomalous and facts.regions and facts.frame_area_px else "no" in low
            )
        elif intent == "how_many":
            ok = has(facts.region_count) if facts.is_anomalous else bool(re.search(r"\bno\b|\b0\b", low))
        elif intent == "how_sure":
            ok = has(round(facts.score, 2), round(facts.threshold, 2))
        elif intent == "what_changed":
            h = facts.history
            ok = has(h.flagged, h.window) if h and h.window else "no earlier" in low
        elif intent == "false_alarm":
            past = facts.last_false_alarm
            ok = has(past.inspection_id) if past else "no false alarm" in low
        elif intent == "bank":
            ok = has(facts.bank_version) if facts.bank_version is not None else "not recorded" in low
        else:
            ok = ("no anomaly" in low) != facts.is_anomalous
        if not ok:
            return False
    return True


def degenerate_reason(
    answer: str, question: str, facts: InspectionFacts, earlier_answers: Sequence[str] = ()
) -> str | None:
    """Why an LLM answer must not be shown as the LLM's (empty, repetition, echo, contradiction, missing
    facts), or None when it may be shown. An answer equal to one of ``earlier_answers`` (the dialogue's
    previous assistant turns) repeats itself too."""
    if not answer.strip():
        return "empty"
    if repeats_itself(answer):
        return "repeats itself"
    if answer.strip().lower() in {a.strip().lower() for a in earlier_answers}:
        return "repeats itself: the same as an earlier answer"
    if echoes(answer, question):
        return "echoes the prompt"
    reason = contradicts(answer, facts)
    if reason is not None:
        return f"contradicts the facts: {reason}"
    if not states_facts(answer, facts, question):
        return "does not state the facts asked for"
    return None
