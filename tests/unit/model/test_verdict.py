"""REFERENCE.md answer templates and their parser."""

from __future__ import annotations

import pytest

from model.exceptions import ModelError
from model.positions import POSITION_NAMES
from model.verdict import NO_ANOMALY, parse_verdict, verdict_sentence


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
    assert parse_verdict(verdict_sentence(positions)) == (bool(positions), positions)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  yes. There is an anomaly at the Top Right.", (True, ("top right",))),
        ("No anomaly is visible; the washer looks normal.", (False, ())),
        ("Yes, there are 2 anomalies in the image, they are at the top and\nbottom left of the image.", (True, ("top", "bottom left"))),
        ("The image shows no anomaly.", (False, ())),
        ("There is an anomaly in the image.", (True, ())),
    ],
)
def test_lenient_parsing(text: str, expected: tuple[bool, tuple[str, ...]]) -> None:
    assert parse_verdict(text) == expected


def test_unparseable_and_unknown_position() -> None:
    with pytest.raises(ModelError, match="banana"):
        parse_verdict("banana bread")
    with pytest.raises(ModelError, match="'middle'"):
        verdict_sentence(["middle"])
    assert NO_ANOMALY.startswith("No,")
