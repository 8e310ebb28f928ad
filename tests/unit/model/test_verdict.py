"""The method's answer templates (docs/method.md), read back by the one parser, model.answers.parse_answer."""

from __future__ import annotations

import pytest

from model.answers import parse_answer
from model.exceptions import ModelError
from model.positions import POSITION_NAMES
from model.verdict import NO_ANOMALY, verdict_sentence


def test_reference_templates() -> None:
    assert verdict_sentence([]) == "No, there is no anomaly in the image."
    assert verdict_sentence(["top left"]) == "Yes, there is an anomaly in the image, at the top left of the image."
    assert verdict_sentence(["left", "bottom"]) == (
        "Yes, there are 2 anomalies in the image, they are at the left and bottom of the image."
    )
    assert verdict_sentence(["top", "center", "right"]) == (
        "Yes, there are 3 anomalies in the image, they are at the top, center and right of the image."
    )


@pytest.mark.parametrize(
    "positions", [(), ("center",), ("top", "top left"), ("bottom right", "left", "top"), tuple(POSITION_NAMES)]
)
def test_round_trip(positions: tuple[str, ...]) -> None:
    assert parse_answer(verdict_sentence(positions))[:2] == (bool(positions), positions)


def test_unknown_position() -> None:
    with pytest.raises(ModelError, match="'middle'"):
        verdict_sentence(["middle"])
    assert NO_ANOMALY.startswith("No,")
