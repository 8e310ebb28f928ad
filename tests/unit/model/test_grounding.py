"""model/grounding.py: question intents, facts answers, and the degenerate-answer check (no LLM)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from model.grounding import (
    InspectionFacts,
    LineHistory,
    PastInspection,
    RegionFact,
    contradicts,
    degenerate_reason,
    echoes,
    facts_answer,
    facts_prompt,
    question_intents,
    repeats_itself,
    states_facts,
)

HISTORY = LineHistory(window=20, flagged=3, last_day_total=12, last_day_flagged=2, day_before_total=8,
                      day_before_flagged=0)
FALSE_ALARM = PastInspection(41, "f-41", 0.62, 0.5, ("left",), datetime(2026, 3, 1, tzinfo=UTC))


def flagged(**overrides) -> InspectionFacts:
    values = dict(
        inspection_id=7, product_class="brick", line_id="line-1", is_anomalous=True, score=0.9, threshold=0.5,
        positions=("top left", "bottom"), region_count=2,
        regions=(RegionFact("top left", 10, 12, 50, 40, 2000), RegionFact("bottom", 100, 180, 20, 20, 400)),
        frame_width_px=224, frame_height_px=224, bank_version=3, bank_shots=16, history=HISTORY,
        last_false_alarm=FALSE_ALARM,
    )
    values.update(overrides)
    return InspectionFacts(**values)


def normal(**overrides) -> InspectionFacts:
    return flagged(is_anomalous=False, score=0.2, positions=(), region_count=0, regions=(), **overrides)


@pytest.mark.parametrize(("question", "intents"), [
    ("Where is the defect and how big is it?", ("where", "how_big")),
    ("Which corner is affected?", ("where",)),
    ("How many anomalies are there?", ("how_many",)),
    ("How sure are you?", ("how_sure",)),
    ("What is the score against the threshold?", ("how_sure",)),
    ("What changed since yesterday?", ("what_changed",)),
    ("Is this like the last false alarm?", ("false_alarm",)),
    ("Which bank version and how many shots?", ("bank", "how_many")),
    ("Is it safe to ship?", ("other",)),
])
def test_question_intents(question, intents):
    assert question_intents(question) == intents


def test_facts_answers_state_the_facts():
    f = flagged()
    assert facts_answer(f, "Where is it?") == (
        "There are 2 anomaly regions: at the top left (box x=10 y=12 w=50 h=40 px) and the bottom "
        "(box x=100 y=180 w=20 h=20 px)."
    )
    assert facts_answer(f, "How big is it?") == (
        "The regions cover 2400 px in all, 4.8% of the 224x224 px frame: 2000 px at the top left and 400 px at the bottom."
    )
    assert facts_answer(f, "How many?") == "2 anomaly regions, at the top left and bottom."
    assert facts_answer(f, "How sure?") == "Score 0.90 against threshold 0.50 (1.80x the threshold): a clear anomaly."
    assert facts_answer(f, "What changed since yesterday?") == (
        "On line-1, brick: 3 of the last 20 inspections were flagged (15.0%). "
        "Last 24 h: 2 of 12 (16.7%) flagged; the 24 h before: 0 of 8 (0.0%)."
    )
    assert facts_answer(f, "Is this like the last false alarm?") == (
        "The last false alarm of brick was inspection 41 (score 0.62, threshold 0.50, at the left). "
        "This one is at the top left and bottom, score 0.90: a different place."
    )
    assert facts_answer(f, "Which bank?") == "Scored against the brick memory bank v3 built from 16 normal shots."
    for question in ("Where?", "How big?", "How many?", "How sure?", "What changed?", "Like the last false alarm?"):
        assert states_facts(facts_answer(f, question), f, question), question
        assert degenerate_reason(facts_answer(f, question), question, f) is None, question


def test_facts_answers_of_a_normal_frame_and_missing_history():
    f = normal(history=None, last_false_alarm=None)
    assert facts_answer(f, "Where is the defect?") == "No anomaly was found in this frame, so there is nothing to locate."
    assert facts_answer(f, "How many?") == "No anomaly regions: the frame was judged normal."
    assert facts_answer(f, "How sure?") == "Score 0.20 against threshold 0.50 (0.40x the threshold): clearly normal."
    assert facts_answer(f, "What changed?") == "There is no earlier inspection of brick on this line to compare with."
    assert facts_answer(f, "Like the last false alarm?") == "No false alarm is recorded for brick."
    close = flagged(score=0.55)
    assert facts_answer(close, "How sure?").endswith("flagged, but close to the threshold.")


def test_repetition_is_detected():
    assert repeats_itself("The image is of a brick. The image is of a brick. The image is of a brick.")
    assert repeats_itself("The corner of the image is affected by the corner of the image.")
    assert repeats_itself("top top top top top top top top left")
    assert not repeats_itself("The anomaly is at the top left, 2000 px.")
    assert not repeats_itself("Last 24 h: 1 of 2 (50.0%) flagged; the 24 h before: 1 of 2 (50.0%).")


def test_echo_is_detected():
    question = "Where is the defect and how big is it?"
    assert echoes("Where is the defect and how big is it? It is big.", question)
    assert echoes("### Human: tell me", "Where?")
    assert echoes("Facts: yes there is an anomaly", "Where?")
    assert not echoes("At the top left, 2000 px.", question)


def test_contradictions_are_detected():
    f = flagged()
    assert contradicts("No, there is no anomaly in the image.", f) == "says no anomaly for a flagged frame"
    assert "not in the facts" in contradicts("It is at the top right.", f)
    assert contradicts("There are 3 anomalies in the image.", f) == "states 3 anomalies, the facts say 2"
    assert contradicts("It covers 5123 px.", f) == "states number(s) [5123.0] not in the facts"
    assert contradicts("Yes, there is an anomaly in the image.", normal()) == "says an anomaly for a normal frame"
    assert contradicts("The regions are at the top left and bottom, 2400 px.", f) is None


def test_degenerate_reasons_name_the_fault():
    f = flagged()
    assert degenerate_reason("", "Where?", f) == "empty"
    assert degenerate_reason("The image is of a brick. The image is of a brick.", "Where?", f) == "repeats itself"
    assert degenerate_reason("Where is the defect and how big is it", "Where is the defect and how big is it?",
                             f) == "echoes the prompt"
    assert degenerate_reason("It is at the center.", "Where?", f).startswith("contradicts the facts")
    assert degenerate_reason("The image is of a brick.", "Where?", f) == "does not state the facts asked for"
    assert degenerate_reason("At the top left and the bottom.", "Where is it?", f) is None


def test_the_facts_prompt_holds_what_the_question_asks():
    f = flagged()
    prompt = facts_prompt(f, "How big is it?")
    assert prompt.startswith("Facts: Yes, there are 2 anomalies in the image, they are at the top left and bottom")
    assert "2400 px" in prompt
    assert "false alarm" not in prompt
    assert "inspection 41" in facts_prompt(f)  # no question: every fact


def test_garbled_boxes_and_answers_copied_from_earlier_turns_are_refused():
    f = flagged()
    assert contradicts("At the top left (box x=10 y=12 w=50 h=40 px).", f) is None
    assert contradicts("At the top left (box x=10 y = 12 w=.8 h.x).", f) == (
        "states box w='.8', the facts' boxes have w in ['20', '50']"
    )
    earlier = ["No anomaly was found in this frame, so there is nothing to locate."]
    assert degenerate_reason(earlier[0], "How many anomalies?", normal(), earlier) == (
        "repeats itself: the same as an earlier answer"
    )
    assert degenerate_reason(earlier[0], "Where is it?", normal()) is None
