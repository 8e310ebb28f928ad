"""Automatic decision threshold of a bank: no manual threshold anywhere.

The threshold on the image score max(M) is chosen from two score sets measured when the bank is
built (model/fewshot.py): scores of *normal* views (leave-one-out shots or augmented views)
and scores of the same shots with *synthetic defects*. The rule maximises balanced accuracy; on a
plateau of equally good thresholds it takes the midpoint, never below ``floor`` when one is given
(model/fewshot.py gives the largest score of a normal shot itself: a threshold that flags one of the
operator's own normal frames is wrong on the only real frames it has). When the sets separate perfectly the
threshold sits in the gap, pulled no lower than ``mean + 3 std`` of the normal scores (a few
normal scores underestimate the normal tail) and no higher than the smallest anomaly score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from model.exceptions import ModelError

__all__ = ["Calibration", "choose_threshold", "METHOD", "OVERRIDE_METHOD", "STREAM_METHOD", "stream_threshold"]

METHOD = "balanced-accuracy-midpoint"
STREAM_METHOD = "stream-robust"  # refined from the live stream's own scores (stream_threshold)
OVERRIDE_METHOD = "operator-override"  # a threshold an operator set (`bank sensitivity`); nothing automatic moves it
STREAM_TAIL_SIGMAS = 4.0  # median + 4 robust sigmas of the stream's scores: a few % defects barely move either
STREAM_BOUND = 0.3  # the stream may move the bank-time threshold by at most 30 % either way
STREAM_MIN_FRAMES = 50
_NORMAL_TAIL_STDS = 3.0  # separable case: the threshold sits at mean + 3 std of the normal scores ...
_GAP_FRACTION_MIN = 0.1  # ... at least 1/10 of the gap above the largest normal score, at most mid-gap


@dataclass(frozen=True)
class Calibration:
    """How a bank decides: ``score > threshold`` is anomalous; the statistics document the choice."""

    threshold: float
    normal_mean: float
    normal_std: float
    normal_max: float
    anomaly_mean: float
    anomaly_std: float
    anomaly_min: float
    normal_count: int
    anomaly_count: int
    balanced_accuracy: float  # on the calibration scores themselves
    method: str = METHOD
    # the version whose calibration this one replaced (stream refinement or operator override); None = bank-time
    source_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (round-trips through :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; ModelError naming the missing or bad field."""
        try:
            values = {
                "threshold": float(data["threshold"]),
                "normal_mean": float(data["normal_mean"]),
                "normal_std": float(data["normal_std"]),
                "normal_max": float(data["normal_max"]),
                "anomaly_mean": float(data["anomaly_mean"]),
                "anomaly_std": float(data["anomaly_std"]),
                "anomaly_min": float(data["anomaly_min"]),
                "normal_count": int(data["normal_count"]),
                "anomaly_count": int(data["anomaly_count"]),
                "balanced_accuracy": float(data["balanced_accuracy"]),
                "method": str(data.get("method", METHOD)),
                "source_version": None if data.get("source_version") is None else int(data["source_version"]),
            }
        except KeyError as exc:
            raise ModelError(f"calibration is missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ModelError(f"calibration has a bad value: {exc}") from None
        if not math.isfinite(values["threshold"]):
            raise ModelError(f"calibration threshold must be finite, got {values['threshold']}")
        return cls(**values)


def _balanced_accuracy(normal: np.ndarray, anomaly: np.ndarray, threshold: float) -> float:
    return 0.5 * (float(np.mean(normal <= threshold)) + float(np.mean(anomaly > threshold)))


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """(first, last) index of the longest run of True in ``flags`` (the lowest one on ties)."""
    best, current_start, best_len = (0, 0), None, 0
    for index, flag in enumerate(flags.tolist() + [False]):
        if flag and current_start is None:
            current_start = index
        elif not flag and current_start is not None:
            if index - current_start > best_len:
                best, best_len = (current_start, index - 1), index - current_start
            current_start = None
    return best


def choose_threshold(normal_scores: Sequence[float], anomaly_scores: Sequence[float], *,
                     floor: float | None = None) -> Calibration:
    """The :class:`Calibration` whose threshold best separates normal from anomaly scores, and is >= ``floor``.

    >>> choose_threshold([0.1, 0.2, 0.15], [0.6, 0.7]).threshold > 0.2
    True
    """
    normal = np.asarray(normal_scores, dtype=np.float64).ravel()
    anomaly = np.asarray(anomaly_scores, dtype=np.float64).ravel()
    for name, values in (("normal", normal), ("anomaly", anomaly)):
        if values.size == 0:
            raise ModelError(f"calibration needs at least one {name} score, got none")
        if not np.all(np.isfinite(values)):
            raise ModelError(f"calibration got non-finite {name} scores: {values[~np.isfinite(values)][:5].tolist()}")
    if anomaly.max() <= normal.min():
        raise ModelError(
            f"calibration failed: every synthetic-anomaly score ({anomaly.max():.4f} max) is <= every "
            f"normal score ({normal.min():.4f} min); the shots are too different from one another"
        )

    if normal.max() < anomaly.min():  # perfectly separable: stay in the gap, near the normal side
        # synthetic defects are bolder than many real ones: sit just above the normal tail
        # (mean + 3 std, at least a little above the largest normal score), never past mid-gap
        low, high = float(normal.max()), float(anomaly.min())
        tail = float(normal.mean() + _NORMAL_TAIL_STDS * normal.std())
        threshold = min(max(tail, low + _GAP_FRACTION_MIN * (high - low)), 0.5 * (low + high))
    else:
        # candidates: every observed score ("score > t" flips just above it); the accuracy is
        # constant from values[j] up to values[j + 1], so a run of best candidates is a plateau
        values = np.unique(np.concatenate([normal, anomaly]))
        accuracy = np.array([_balanced_accuracy(normal, anomaly, t) for t in values])
        best_run = _longest_run(np.isclose(accuracy, accuracy.max()))
        start, stop = best_run  # candidates values[start..stop] are all best
        end = float(values[stop + 1]) if stop + 1 < values.size else float(values[stop])
        threshold = 0.5 * (float(values[start]) + end)
    if floor is not None:
        if not math.isfinite(floor):
            raise ModelError(f"calibration floor must be finite, got {floor}")
        threshold = max(threshold, float(floor))
    return Calibration(
        threshold=float(threshold),
        normal_mean=float(normal.mean()),
        normal_std=float(normal.std()),
        normal_max=float(normal.max()),
        anomaly_mean=float(anomaly.mean()),
        anomaly_std=float(anomaly.std()),
        anomaly_min=float(anomaly.min()),
        normal_count=int(normal.size),
        anomaly_count=int(anomaly.size),
        balanced_accuracy=_balanced_accuracy(normal, anomaly, threshold),
    )


def stream_threshold(scores: Sequence[float], bank: Calibration, *, min_frames: int = STREAM_MIN_FRAMES) -> Calibration:
    """A refined calibration from the image scores the stream gave a class's frames with this bank.

    Most frames on a line are normal, so the median and the MAD of the scores describe the normal
    frames even with a few % defects among them; the threshold is median + 4 robust sigmas
    (1.4826 MAD), kept within 30 % of the bank-time threshold ``bank`` (which stays the reference:
    a stream full of defects cannot drag the threshold anywhere).

    >>> base = choose_threshold([0.2, 0.25, 0.3], [0.9])
    >>> refined = stream_threshold([0.20 + 0.001 * (i % 20) for i in range(100)] + [0.9] * 3, base)
    >>> refined.method, round(refined.threshold, 3) < round(base.threshold, 3)
    ('stream-robust', True)
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size < min_frames:
        raise ModelError(f"self-calibration needs at least {min_frames} scored frames, got {values.size}")
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    wanted = median + STREAM_TAIL_SIGMAS * sigma
    low, high = bank.threshold * (1 - STREAM_BOUND), bank.threshold * (1 + STREAM_BOUND)
    threshold = float(min(max(wanted, low), high, 1.0))
    normal = values[values <= threshold]
    return Calibration(
        threshold=threshold,
        normal_mean=float(normal.mean()) if normal.size else median,
        normal_std=float(normal.std()) if normal.size else sigma,
        normal_max=float(normal.max()) if normal.size else median,
        anomaly_mean=bank.anomaly_mean,
        anomaly_std=bank.anomaly_std,
        anomaly_min=bank.anomaly_min,
        normal_count=int(values.size),
        anomaly_count=bank.anomaly_count,
        balanced_accuracy=bank.balanced_accuracy,
        method=STREAM_METHOD,
    )
