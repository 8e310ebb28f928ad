"""Build a calibrated per-class memory bank from k normal images (no manual threshold).

1. Bank: patch embeddings (see :func:`model.anomaly_map.patch_embeddings`) of every shot, and of
   its 90/180/270-degree rotations when the class tolerates them; optional greedy coreset.
2. Normal scores: leave-one-out, each shot scored against a bank built without it; with a single
   shot, slightly shifted/rotated/brightened views of it scored against its own bank.
3. Anomaly scores: synthetic defects (training/defects.py) injected into the shots, scored the
   same way (against the bank without that shot).
4. Threshold: :func:`model.calibration.choose_threshold` on the two score sets, stored in the bank.

>>> from model.encoders.efficientnet import EfficientNetLiteEncoder
>>> from training.synthetic import normal_images
>>> bank = build_bank(EfficientNetLiteEncoder(), normal_images("gravel", 4), "gravel", 1)
>>> bank.shots, bank.calibration.threshold > 0
(4, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from model.anomaly_map import few_shot_anomaly_map, image_scores, patch_embeddings
from model.bank import MemoryBank
from model.calibration import choose_threshold
from model.coreset import coreset_size, greedy_coreset
from model.encoders.base import ImageEncoder
from training.defects import random_defect
from training.exceptions import BankBuildError

__all__ = ["build_bank", "augmented_views", "transport_round_trip", "ANOMALIES_PER_BANK", "SINGLE_SHOT_VIEWS"]

ANOMALIES_PER_BANK = 16  # synthetic-defect images scored per calibration (spread over the shots)
SINGLE_SHOT_VIEWS = 8  # augmented normal views scored when there is only one shot
VIEWS_PER_SHOT = 2  # augmented normal views per shot scored leave-one-out when there are several
TRANSPORT_JPEG_QUALITY = 90  # cameras send JPEG (connectors.schema.encode_image's default quality)
_VIEW_ZOOM = 1.12  # augmented views: zoom that keeps shifted/rotated content inside the frame
_ENCODE_BATCH = 16  # images per encoder call (bounds memory)


def augmented_views(image: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` slightly moved copies of a normal image: shift +-4..12 px, rotation +-3 deg, brightness +-6 %.

    The copy is zoomed in by 12 % so that the shift and rotation never expose the border (a
    reflected border would be a pattern no camera sees, and would inflate the normal scores).

    >>> len(augmented_views(np.zeros((64, 64, 3), np.uint8), 3, np.random.default_rng(0)))
    3
    """
    height, width = image.shape[:2]
    scale = width / 224.0
    views = []
    for _ in range(count):
        shift = rng.uniform(4, 12, 2) * scale * rng.choice([-1, 1], 2)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-3, 3)), _VIEW_ZOOM)
        matrix[:, 2] += shift
        moved = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        views.append(np.clip(moved.astype(np.float32) * rng.uniform(0.94, 1.06), 0, 255).astype(np.uint8))
    return views


def transport_round_trip(image: np.ndarray, jpeg_quality: int | None) -> np.ndarray:
    """The image as the stream will see it after JPEG encoding at ``jpeg_quality`` (None: unchanged).

    >>> transport_round_trip(np.zeros((8, 8, 3), np.uint8), 90).shape
    (8, 8, 3)
    """
    if jpeg_quality is None:
        return image
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise BankBuildError(f"could not JPEG-encode a calibration view of shape {image.shape}")
    return cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@torch.inference_mode()
def _encode(encoder: ImageEncoder, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """Raw stage features (B, C_i, H_i, W_i) of uint8 RGB images, encoded in batches."""
    parts: list[list[torch.Tensor]] = []
    for start in range(0, len(images), _ENCODE_BATCH):
        pixels = encoder.preprocess(list(images[start : start + _ENCODE_BATCH]))
        parts.append(list(encoder(pixels).patch_features))
    return [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))]


def _bank_rows(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """Stage features of some images -> per stage (images * H_i * W_i, C_i) bank rows."""
    return [e.reshape(-1, e.shape[-1]) for e in patch_embeddings(features)]


def _subsample(rows: list[torch.Tensor], ratio: float | None, seed: int) -> list[torch.Tensor]:
    if ratio is None:
        return rows
    return [r[greedy_coreset(r, coreset_size(r.shape[0], ratio), seed=seed + i)] for i, r in enumerate(rows)]


@torch.inference_mode()
def build_bank(
    encoder: ImageEncoder,
    images: Sequence[np.ndarray],
    product_class: str,
    version: int,
    *,
    rotations: bool = True,
    coreset_ratio: float | None = None,
    seed: int = 0,
    jpeg_quality: int | None = TRANSPORT_JPEG_QUALITY,
) -> MemoryBank:
    """A calibrated :class:`MemoryBank` from k >= 1 normal uint8 RGB images of one class.

    ``rotations`` adds the 90/180/270-degree rotations of every shot to the bank (textures and
    round parts tolerate them; oriented parts do not). ``coreset_ratio`` in (0, 1] keeps that
    fraction of bank rows per stage (greedy k-center). Deterministic for a given ``seed``.
    Calibration views go through the JPEG round trip the frames take to the stream
    (``jpeg_quality``; None for lossless cameras): compression raises normal scores, and a
    threshold calibrated on raw pixels would flag clean JPEG frames.
    """
    shots = list(images)
    if not shots:
        raise BankBuildError(f"class {product_class!r}: need at least one normal image, got none")
    for index, image in enumerate(shots):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise BankBuildError(
                f"class {product_class!r}: image {index} must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}"
            )
    if coreset_ratio is not None and not 0.0 < coreset_ratio <= 1.0:
        raise BankBuildError(f"coreset_ratio must be in (0, 1], got {coreset_ratio}")
    size = encoder.image_size_px
    shots = [cv2.resize(s, (size, size), interpolation=cv2.INTER_AREA) if s.shape[:2] != (size, size) else s for s in shots]
    turns = (0, 1, 2, 3) if rotations else (0,)
    rng = np.random.default_rng([seed, 31337])

    # bank rows per shot (all of its rotations), per stage
    views = [np.ascontiguousarray(np.rot90(shot, turn)) for shot in shots for turn in turns]
    features = _encode(encoder, views)  # per stage (k * turns, C, H, W)
    per_view = _bank_rows(features)
    rows_per_shot = [r.shape[0] // len(shots) for r in per_view]
    shot_rows = [[r[i * n : (i + 1) * n] for r, n in zip(per_view, rows_per_shot, strict=True)] for i in range(len(shots))]
    full_bank = _subsample(per_view, coreset_ratio, seed)

    # calibration: per shot, normal views (the shot and slightly moved copies) and defective copies,
    # all as the stream sees them (JPEG), scored against a bank without that shot (leave-one-out;
    # with one shot, against the full bank); all queries go through the encoder at once
    defects_per_shot = max(2, -(-ANOMALIES_PER_BANK // len(shots)))
    queries: list[np.ndarray] = []
    normal_count: list[int] = []
    for index, shot in enumerate(shots):
        others = [s for i, s in enumerate(shots) if i != index]
        normals = [shot, *augmented_views(shot, VIEWS_PER_SHOT if others else SINGLE_SHOT_VIEWS, rng)]
        defective = [random_defect(shot, rng, sources=others or [shot])[0] for _ in range(defects_per_shot)]
        queries += [transport_round_trip(view, jpeg_quality) for view in normals + defective]
        normal_count.append(len(normals))
    query_features = _encode(encoder, queries)
    normal_scores: list[float] = []
    anomaly_scores: list[float] = []
    start = 0
    for index in range(len(shots)):
        if len(shots) > 1:
            bank = _subsample(
                [torch.cat([shot_rows[j][i] for j in range(len(shots)) if j != index]) for i in range(len(per_view))],
                coreset_ratio,
                seed,
            )
        else:
            bank = full_bank
        count = normal_count[index] + defects_per_shot
        batch = [q[start : start + count] for q in query_features]
        scores = image_scores(few_shot_anomaly_map(batch, bank, size)).tolist()
        normal_scores += scores[: normal_count[index]]
        anomaly_scores += scores[normal_count[index] :]
        start += count
    calibration = choose_threshold(normal_scores, anomaly_scores)
    return MemoryBank(
        full_bank,
        product_class=product_class,
        version=version,
        shots=len(shots),
        encoder_name=encoder.name,
        image_size_px=size,
        calibration=calibration,
    )
