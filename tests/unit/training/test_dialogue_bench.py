"""training/dialogue_bench.py: the question set and the table of shares per intent."""

from __future__ import annotations

from training.dialogue_bench import QUESTIONS, BenchRow, main, table


def _row(intent: str, *, right: bool, source: str, seconds: float, degenerate: bool = False) -> BenchRow:
    return BenchRow(inspection_id=1, flagged=True, intent=intent, question="q", answer="a", source=source,
                    llm_text="t", reason=None, right_facts=right, degenerate_shown=False, llm_right=source == "llm",
                    llm_degenerate=degenerate, seconds=seconds)


def test_the_questions_cover_every_operator_intent():
    from model.grounding import question_intents

    assert [intent for intent, _ in QUESTIONS] == [
        "where", "how_big", "how_many", "how_sure", "what_changed", "false_alarm"]
    for intent, question in QUESTIONS:
        assert question_intents(question) == (intent,), question


def test_table_shares_per_intent_and_in_all():
    rows = [_row("where", right=True, source="llm", seconds=1.0),
            _row("where", right=True, source="facts", seconds=3.0, degenerate=True),
            _row("how_big", right=False, source="facts", seconds=2.0)]
    lines = table(rows).splitlines()
    assert lines[2] == "| where | 2 | 100% | 0% | 50% | 50% | 50% | 2.00 |"
    assert lines[3] == "| how_big | 1 | 0% | 0% | 0% | 0% | 0% | 2.00 |"
    assert lines[4] == "| all | 3 | 67% | 0% | 33% | 33% | 33% | 2.00 |"


def test_fewer_than_40_questions_is_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--inspections", "6"])
    assert "need --inspections >= 7 (>= 40 questions)" in capsys.readouterr().err
