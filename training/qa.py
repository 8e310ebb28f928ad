"""Question/answer pairs for training the prompt learner, with the answer templates of docs/method.md.

Each training image gets the question ``"{description} Is there any anomaly in the image?"`` and an
answer built from its ground-truth mask: no region -> "No, ..."; one region -> its 3x3 position;
several -> their count and positions, largest region first. A region's position is its centre
(row / H, col / W) against thirds; regions are the mask's 8-connected components. Regions and
sentences come from :mod:`model.positions` and :mod:`model.verdict`, the same code the detector uses.

>>> import numpy as np
>>> mask = np.zeros((90, 90), np.uint8); mask[5:20, 70:85] = 1
>>> answer_for_mask(mask)
'Yes, there is an anomaly in the image, at the top right of the image.'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linesight.errors import ConfigError
from model.anomalygpt import QUESTION, default_description
from model.positions import MIN_REGION_FRACTION, POSITION_NAMES, find_regions
from model.verdict import NO_ANOMALY, verdict_sentence

__all__ = [
    "NO_ANOMALY",
    "POSITION_NAMES",
    "QUESTION",
    "QAPair",
    "answer_for_mask",
    "mask_positions",
    "qa_pair",
    "training_pairs",
]


@dataclass(frozen=True)
class QAPair:
    """One turn: the question text (description included) and the expected answer."""

    question: str
    answer: str
    positions: tuple[str, ...]  # 3x3 names, largest region first
    region_count: int


def mask_positions(mask: np.ndarray, min_fraction: float = MIN_REGION_FRACTION) -> tuple[str, ...]:
    """3x3 positions of the regions of ``mask`` (non-zero = anomalous), largest first.

    Regions come from :func:`model.positions.find_regions` (specks below ``min_fraction`` of the
    image are dropped, as at inference), so training answers and the detector's verdicts agree.

    >>> m = np.zeros((30, 30), np.uint8); m[0:5, 0:5] = 1; m[20:30, 20:30] = 1
    >>> mask_positions(m)
    ('bottom right', 'top left')
    """
    if mask.ndim != 2:
        raise ConfigError(f"mask must be 2-D (H, W), got shape {tuple(mask.shape)}")
    return tuple(region.position for region in find_regions(mask, min_fraction=min_fraction))


def answer_for_mask(mask: np.ndarray, min_fraction: float = MIN_REGION_FRACTION) -> str:
    """The answer sentence for a ground-truth mask (docs/method.md templates, via :mod:`model.verdict`)."""
    return verdict_sentence(mask_positions(mask, min_fraction))


def qa_pair(
    mask: np.ndarray,
    *,
    product_class: str | None = None,
    with_description: bool = True,
    min_fraction: float = MIN_REGION_FRACTION,
) -> QAPair:
    """The question and answer for an image whose ground truth is ``mask`` (all zeros = normal).

    >>> qa_pair(np.zeros((8, 8), np.uint8), product_class="screw").answer
    'No, there is no anomaly in the image.'
    """
    positions = mask_positions(mask, min_fraction)
    question = f"{default_description(product_class)} {QUESTION}" if with_description else QUESTION
    return QAPair(question, verdict_sentence(positions), positions, len(positions))


def training_pairs(
    normal_image: np.ndarray,
    anomaly_image: np.ndarray,
    anomaly_mask: np.ndarray,
    *,
    product_class: str | None = None,
    with_description: bool = True,
) -> list[tuple[np.ndarray, np.ndarray, QAPair]]:
    """The batch pairing of docs/method.md: the normal image (zero mask, "No") and its synthetic anomaly.

    >>> img = np.zeros((9, 9, 3), np.uint8); m = np.zeros((9, 9), np.uint8); m[4, 4] = 1
    >>> [p.answer[:3] for _, _, p in training_pairs(img, img, m)]
    ['No,', 'Yes']
    """
    zero = np.zeros(anomaly_mask.shape, np.uint8)
    kwargs = {"product_class": product_class, "with_description": with_description}
    return [
        (normal_image, zero, qa_pair(zero, **kwargs)),
        (anomaly_image, (anomaly_mask > 0).astype(np.uint8), qa_pair(anomaly_mask, **kwargs)),
    ]
