"""Detector: encoder -> memory bank and/or text-aligned decoder -> anomaly map -> decision, regions, verdict.

The encoder runs once per batch, even when the batch mixes product classes; each class's bank is
then matched against its own rows. Decision: image score max(M) > threshold; the mask is
M > threshold, so an anomalous frame always has at least one region. Three ways to get M:

- few-shot (default, ``fusion="few_only"``): M_few against the bank; threshold = the bank's
  calibrated one.
- fused (``fusion="mean"`` or ``"max"``, needs a :class:`ZeroShotHead`): both maps divided by their
  own thresholds, then combined; threshold 1. Measured on the demo classes, few-only scores best
  (README), hence the default.
- zero-shot (:meth:`Detector.score_zero_shot`, no bank: a new class): M_zero from the trained
  decoder; threshold 0.5, where "abnormal" beats "normal" in its softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.anomaly_map import few_shot_anomaly_map, image_scores
from model.bank import MemoryBank
from model.decoder import fuse
from model.encoders.base import ImageEncoder
from model.exceptions import BankFileError, ModelError, ShapeError
from model.positions import find_regions
from model.verdict import verdict_sentence
from model.zero_shot import ZeroShotHead

__all__ = ["DETECTOR_FUSIONS", "ZERO_SHOT_THRESHOLD", "Detector", "FrameScore", "ZeroShotHead"]

DETECTOR_FUSIONS: tuple[str, ...] = ("few_only", "mean", "max")
ZERO_SHOT_THRESHOLD = 0.5  # the decoder's softmax: "abnormal" beats "normal"


@dataclass(frozen=True)
class FrameScore:
    """The detector's result for one frame."""

    score: float  # image score = max(M)
    threshold: float  # the class's calibrated threshold used for the decision
    is_anomalous: bool
    anomaly_map: np.ndarray  # (S, S) float32, M
    mask: np.ndarray  # (S, S) uint8 in {0, 1}
    positions: tuple[str, ...]  # 3x3 names, largest region first
    region_count: int
    verdict: str  # REFERENCE.md template sentence


class Detector:
    """Scores uint8 RGB frames against per-class memory banks with one frozen encoder.

    >>> from model.encoders.efficientnet import EfficientNetLiteEncoder
    >>> from training.fewshot import build_bank
    >>> from training.synthetic import normal_images
    >>> encoder = EfficientNetLiteEncoder()
    >>> bank = build_bank(encoder, normal_images("washer", 2), "washer", 1, rotations=True)
    >>> Detector(encoder).score_batch(normal_images("washer", 1, seed=5), bank)[0].verdict
    'No, there is no anomaly in the image.'
    """

    def __init__(
        self,
        encoder: ImageEncoder,
        device: str = "cpu",
        zero_shot: ZeroShotHead | None = None,
        fusion: str = "few_only",
    ) -> None:
        if fusion not in DETECTOR_FUSIONS:
            raise ModelError(f"unknown fusion {fusion!r}; choose one of {list(DETECTOR_FUSIONS)}")
        if fusion != "few_only" and zero_shot is None:
            raise ModelError(f"fusion {fusion!r} needs a trained decoder (zero-shot head); none given")
        self.encoder = encoder.to(device).eval()
        self.device = torch.device(device)
        self.fusion = fusion
        self.zero_shot = zero_shot
        if zero_shot is not None:
            zero_shot.check_fits(encoder)
            zero_shot.decoder.to(device).eval()

    def check_bank(self, bank: MemoryBank) -> None:
        """BankFileError if ``bank`` was not built with this detector's encoder and image size."""
        problems = []
        if bank.encoder_name != self.encoder.name:
            problems.append(f"encoder {bank.encoder_name!r} != {self.encoder.name!r}")
        if bank.image_size_px != self.encoder.image_size_px:
            problems.append(f"image size {bank.image_size_px} != {self.encoder.image_size_px}")
        if tuple(bank.stage_channels) != tuple(self.encoder.stage_channels):
            problems.append(f"stage channels {bank.stage_channels} != {self.encoder.stage_channels}")
        if problems:
            raise BankFileError(f"bank {bank.key} does not fit this detector: {'; '.join(problems)}")

    def score_batch(self, images: Sequence[np.ndarray], bank: MemoryBank) -> list[FrameScore]:
        """Score frames of one product class (uint8 RGB (H, W, 3) each) against ``bank``."""
        return self.score_batch_mixed(images, [bank] * len(images))

    @torch.inference_mode()
    def score_batch_mixed(self, images: Sequence[np.ndarray], banks: Sequence[MemoryBank]) -> list[FrameScore]:
        """Score frames of mixed classes; ``banks[i]`` is the bank of ``images[i]``. Encoder runs once."""
        if len(images) != len(banks):
            raise ShapeError(f"got {len(images)} images but {len(banks)} banks; need one bank per image")
        if not images:
            return []
        groups: dict[int, list[int]] = {}  # bank identity -> rows
        for row, bank in enumerate(banks):
            groups.setdefault(id(bank), []).append(row)
        for rows in groups.values():
            self.check_bank(banks[rows[0]])
        pixels = self.encoder.preprocess(list(images)).to(self.device)  # (B, 3, S, S)
        features = self.encoder(pixels).patch_features  # per stage (B, C_i, H_i, W_i)
        size = self.encoder.image_size_px
        maps = torch.empty(len(images), size, size)
        thresholds = [float(bank.calibration.threshold) for bank in banks]
        for rows in groups.values():
            bank = banks[rows[0]].to(self.device)
            index = torch.tensor(rows, device=self.device)
            stage_rows = [f.index_select(0, index) for f in features] if len(groups) > 1 else features
            few = few_shot_anomaly_map(stage_rows, bank.stage_features, size)
            if self.fusion != "few_only":
                zero = self.zero_shot.maps(stage_rows, bank.product_class)  # type: ignore[union-attr]
                few = fuse(zero / ZERO_SHOT_THRESHOLD, few / bank.calibration.threshold, self.fusion)
                for row in rows:
                    thresholds[row] = 1.0  # both maps are in units of their own threshold
            maps[rows] = few.cpu()
        scores = image_scores(maps)
        return [self._frame_score(maps[i], float(scores[i]), thresholds[i]) for i in range(len(images))]

    @torch.inference_mode()
    def score_zero_shot(self, images: Sequence[np.ndarray], product_classes: Sequence[str]) -> list[FrameScore]:
        """Score frames of classes that have no bank with the trained decoder alone (threshold 0.5)."""
        if self.zero_shot is None:
            raise ModelError("zero-shot scoring needs a trained decoder (zero-shot head); none given")
        if len(images) != len(product_classes):
            raise ShapeError(f"got {len(images)} images but {len(product_classes)} classes; need one class per image")
        if not images:
            return []
        features = self.encoder(self.encoder.preprocess(list(images)).to(self.device)).patch_features
        size = self.encoder.image_size_px
        maps = torch.empty(len(images), size, size)
        groups: dict[str, list[int]] = {}
        for row, name in enumerate(product_classes):
            groups.setdefault(name, []).append(row)
        for name, rows in groups.items():
            index = torch.tensor(rows, device=self.device)
            stage_rows = [f.index_select(0, index) for f in features] if len(groups) > 1 else features
            maps[rows] = self.zero_shot.maps(stage_rows, name).cpu()
        scores = image_scores(maps)
        return [self._frame_score(maps[i], float(scores[i]), ZERO_SHOT_THRESHOLD) for i in range(len(images))]

    @staticmethod
    def _frame_score(anomaly_map: torch.Tensor, score: float, threshold: float) -> FrameScore:
        m = anomaly_map.numpy().astype(np.float32, copy=False)
        is_anomalous = score > threshold
        mask = (m > threshold).astype(np.uint8) if is_anomalous else np.zeros(m.shape, np.uint8)
        regions = find_regions(mask) if is_anomalous else []
        positions = tuple(r.position for r in regions)
        return FrameScore(
            score=score,
            threshold=float(threshold),
            is_anomalous=is_anomalous,
            anomaly_map=m,
            mask=mask,
            positions=positions,
            region_count=len(regions),
            verdict=verdict_sentence(positions),
        )
