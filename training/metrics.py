"""Anomaly-detection metrics: image/pixel AUROC, AUPRO (anomalib's definition), F1-max, accuracy.

Conventions: labels are 1 = anomalous, 0 = normal; scores are "higher = more anomalous".
Degenerate inputs: when only one label is present (a class with no defective test image, or
masks with no anomalous pixel), AUROC, AUPRO and F1-max are undefined and the functions return
``float("nan")``; :func:`nan_mean` / :func:`nan_std` then leave them out of averages. Shape or
range errors raise :class:`MetricError` naming the values.

>>> round(image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 2)
0.75
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from training.exceptions import TrainingError

__all__ = [
    "COUNT_NAMES",
    "METRIC_NAMES",
    "confusion",
    "MetricError",
    "MetricSet",
    "accuracy",
    "aupro",
    "f1_max",
    "image_auroc",
    "nan_mean",
    "nan_std",
    "pixel_auroc",
    "pro_curve",
]

COUNT_NAMES = ("true_positives", "false_positives", "true_negatives", "false_negatives")  # counts, not fractions
METRIC_NAMES = ("image_auroc", "pixel_auroc", "aupro", "f1_max", "accuracy", "precision", "recall",
                "true_positives", "false_positives", "true_negatives", "false_negatives")


class MetricError(TrainingError):
    """Inputs to a metric have mismatched shapes or invalid values (the message names them)."""


@dataclass(frozen=True)
class MetricSet:
    """One evaluation's metrics, fractions in [0, 1]; NaN where not computable (e.g. no masks)."""

    image_auroc: float = math.nan
    pixel_auroc: float = math.nan
    aupro: float = math.nan
    f1_max: float = math.nan
    accuracy: float = math.nan
    precision: float = math.nan  # of the automatic decision: flagged frames that are defective
    recall: float = math.nan  # defective frames that are flagged
    true_positives: float = math.nan  # confusion counts of the automatic decision (means over draws)
    false_positives: float = math.nan
    true_negatives: float = math.nan
    false_negatives: float = math.nan

    def as_dict(self) -> dict[str, float]:
        """The metrics as a plain dict keyed by :data:`METRIC_NAMES`."""
        return asdict(self)


def _labels_scores(labels: Sequence | np.ndarray, scores: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise MetricError(f"labels ({y.size} values) and scores ({s.size} values) differ in size")
    if y.size == 0:
        raise MetricError("no labels given")
    if not np.isin(y, (0, 1)).all():
        raise MetricError(f"labels must be 0 or 1, got values {np.unique(y)[:10].tolist()}")
    if not np.isfinite(s).all():
        raise MetricError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite values")
    return y.astype(np.int64), s


def image_auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """ROC AUC of image scores (e.g. max of the anomaly map); NaN if only one label is present."""
    from sklearn.metrics import roc_auc_score

    y, s = _labels_scores(labels, scores)
    if y.min() == y.max():
        return math.nan
    return float(roc_auc_score(y, s))


def pixel_auroc(masks: np.ndarray | Sequence[np.ndarray], maps: np.ndarray | Sequence[np.ndarray]) -> float:
    """ROC AUC over all pixels of all images: ground-truth masks (N, H, W) {0, 1} vs maps (N, H, W)."""
    return image_auroc(_stack(masks, "masks") > 0, _stack(maps, "maps"))


def f1_max(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Best F1 over all thresholds (anomalib's F1Max); NaN if only one label is present.

    >>> f1_max([0, 1, 1], [0.2, 0.6, 0.9])
    1.0
    """
    from sklearn.metrics import precision_recall_curve

    y, s = _labels_scores(labels, scores)
    if y.min() == y.max():
        return math.nan
    precision, recall, _ = precision_recall_curve(y, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())


def accuracy(labels: Sequence[int] | np.ndarray, decisions: Sequence[bool] | np.ndarray) -> float:
    """Share of images whose yes/no decision matches the label (defined even with one label).

    >>> accuracy([0, 1, 1, 0], [False, True, False, False])
    0.75
    """
    y, d = _labels_scores(labels, np.asarray(decisions, dtype=np.float64))
    return float((y == (d > 0.5)).mean())


def confusion(labels: Sequence[int] | np.ndarray, decisions: Sequence[bool] | np.ndarray) -> dict[str, float]:
    """The automatic decision's confusion counts with its precision and recall (NaN when undefined).

    >>> confusion([0, 1, 1, 0], [True, True, False, False])["precision"]
    0.5
    """
    y, d = _labels_scores(labels, np.asarray(decisions, dtype=np.float64))
    flagged, defective = d > 0.5, y > 0
    tp, fp = int((flagged & defective).sum()), int((flagged & ~defective).sum())
    tn, fn = int((~flagged & ~defective).sum()), int((~flagged & defective).sum())
    return {
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "recall": tp / (tp + fn) if tp + fn else math.nan,
        "true_positives": float(tp), "false_positives": float(fp),
        "true_negatives": float(tn), "false_negatives": float(fn),
    }


def pro_curve(
    masks: np.ndarray | Sequence[np.ndarray], maps: np.ndarray | Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-region-overlap curve: (FPR, PRO) at every distinct threshold, from (0, 0), FPR ascending.

    FPR = share of normal pixels (all images) with score >= t. PRO = mean over the connected
    regions (8-connectivity, per image) of the share of the region's pixels with score >= t.
    Exact (ties grouped), O(P log P) for P pixels.
    """
    import cv2

    gt = _stack(masks, "masks") > 0
    scores = _stack(maps, "maps").astype(np.float64)
    if gt.shape != scores.shape:
        raise MetricError(f"masks {gt.shape} and maps {scores.shape} differ in shape")
    region_ids = np.zeros(gt.shape, np.int64)  # 0 = normal pixel, r > 0 = region r
    next_id = 0
    for index in range(gt.shape[0]):
        count, labels = cv2.connectedComponents(gt[index].astype(np.uint8), connectivity=8)
        region_ids[index][labels > 0] = labels[labels > 0] + next_id
        next_id += count - 1
    ids = region_ids.reshape(-1)
    flat = scores.reshape(-1)
    n_normal = int((ids == 0).sum())
    if next_id == 0 or n_normal == 0:
        return np.array([0.0]), np.array([math.nan])
    region_sizes = np.bincount(ids, minlength=next_id + 1)
    # each normal pixel adds 1/N to the FPR; each region pixel adds 1/(|region| * n_regions) to the PRO
    pro_step = np.where(ids > 0, 1.0 / (region_sizes[ids] * next_id), 0.0)
    order = np.argsort(-flat, kind="stable")
    fpr = np.cumsum(ids[order] == 0) / n_normal  # integer counts: the curve ends at exactly 1
    pro = np.cumsum(pro_step[order])
    sorted_scores = flat[order]
    last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]  # one point per distinct threshold
    return np.r_[0.0, fpr[last_of_tie]], np.r_[0.0, pro[last_of_tie]]


def aupro(
    masks: np.ndarray | Sequence[np.ndarray],
    maps: np.ndarray | Sequence[np.ndarray],
    fpr_limit: float = 0.3,
) -> float:
    """Area under the PRO curve up to ``fpr_limit``, divided by ``fpr_limit`` (anomalib's AUPRO).

    The curve is cut at ``fpr_limit`` by linear interpolation and integrated with the trapezoid
    rule. NaN when the masks hold no anomalous region or no normal pixel.

    >>> m = np.zeros((1, 2, 4)); m[0, :, :2] = 1
    >>> aupro(m, m + 0.0)  # perfect maps
    1.0
    """
    if not 0 < fpr_limit <= 1:
        raise MetricError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(masks, maps)
    if np.isnan(pro).any():
        return math.nan
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    if x[-1] < fpr_limit and len(x) < len(fpr):  # interpolate the point at the limit
        i = len(x) - 1
        t = (fpr_limit - fpr[i]) / (fpr[i + 1] - fpr[i])
        x, y = np.r_[x, fpr_limit], np.r_[y, pro[i] + t * (pro[i + 1] - pro[i])]
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return area / fpr_limit


def nan_mean(values: Sequence[float]) -> float:
    """Mean ignoring NaN; NaN when every value is NaN (or none given)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def nan_std(values: Sequence[float]) -> float:
    """Population standard deviation ignoring NaN; NaN when every value is NaN."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.std(finite)) if finite else math.nan


def _stack(arrays: np.ndarray | Sequence[np.ndarray], what: str) -> np.ndarray:
    stacked = np.asarray(arrays) if isinstance(arrays, np.ndarray) else np.stack([np.asarray(a) for a in arrays])
    if stacked.ndim == 2:
        stacked = stacked[None]
    if stacked.ndim != 3:
        raise MetricError(f"{what} must be (N, H, W), got shape {stacked.shape}")
    return stacked
