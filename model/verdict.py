"""The answer sentences of the method (docs/method.md); :func:`model.answers.parse_answer` reads them back.

- "No, there is no anomaly in the image."
- "Yes, there is an anomaly in the image, at the {pos} of the image."
- "Yes, there are 2 anomalies in the image, they are at the {p1} and {p2} of the image."
  (generalised: "... there are 3 anomalies ..., they are at the {p1}, {p2} and {p3} of the image.")
"""

from __future__ import annotations

from collections.abc import Sequence

from model.exceptions import ModelError
from model.positions import POSITION_NAMES

__all__ = ["NO_ANOMALY", "verdict_sentence"]

NO_ANOMALY = "No, there is no anomaly in the image."


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
