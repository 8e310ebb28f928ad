"""The evaluation protocol: k-shot, several seeded draws of the reference images, per-class metrics.

For every class, every ``k`` in ``shots`` and every draw ``seed`` in ``range(seeds)``, ``k`` normal
training images are drawn (:func:`draw_references`: a seeded permutation, window ``seed``, so draws
do not share images while there are enough) and scored:

- ``few_shot``: :func:`model.fewshot.build_bank` on the references, then
  :class:`model.detector.Detector` on the test images (its calibrated, threshold-free decision).
- ``zero_shot``: a trained decoder's unsupervised map (``zero_shot_maps``); decision: max(M) > 0.5,
  i.e. "abnormal" beats "normal" in the decoder's softmax. Independent of k, so computed once per class.
- ``fused``: mean of the few-shot and zero-shot maps, each divided by its own threshold (the
  stream's ``map_fusion=mean``, model/detector.py); decision: max > 1.

``zero_shot`` and ``fused`` need a trained decoder: without ``zero_shot_maps`` they are skipped and
the result says why (random-weight numbers are not results). Metrics per class and draw
(:class:`training.metrics.MetricSet`), summarised as mean ± std over draws; the macro figure is the
mean over classes within a draw, then mean ± std over draws. Classes without masks get image-level
metrics only (pixel AUROC and AUPRO are NaN).

>>> EvalConfig(shots=(1,), seeds=2).modes
('few_shot',)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from linesight.errors import ConfigError
from training.datasets import AnomalyDataset, ClassData
from training.exceptions import DatasetError
from training.metrics import (
    METRIC_NAMES,
    MetricSet,
    accuracy,
    aupro,
    confusion,
    f1_max,
    image_auroc,
    nan_mean,
    nan_std,
    pixel_auroc,
)

__all__ = [
    "MODES",
    "Curve",
    "DrawResult",
    "EvalConfig",
    "EvaluationResult",
    "Example",
    "Summary",
    "ZeroShotMaps",
    "evaluate",
    "draw_references",
]

log = logging.getLogger(__name__)
MODES = ("few_shot", "zero_shot", "fused")
NO_DECODER_REASON = (
    "no trained decoder checkpoint given: zero_shot and fused need a trained decoder "
    "(numbers from random decoder weights are not results)"
)
ZeroShotMaps = Callable[[Sequence[np.ndarray], str], np.ndarray]  # (images, class) -> (N, S, S) in [0, 1]


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate; defaults follow the evaluation protocol of docs/method.md."""

    shots: tuple[int, ...] = (1, 2, 4)  # k normal reference images per class
    seeds: int = 3  # seeded draws of the references per k
    modes: tuple[str, ...] = ("few_shot",)  # any of MODES
    rotations: bool | None = None  # add 90/180/270 rotations to the bank; None = yes, except oriented synthetic parts
    batch_size: int = 16  # test images per detector call
    max_test_images: int | None = None  # cap per class (None = all), for quick runs
    examples_per_kind: int = 2  # overlays kept per class: this many hits and this many misses
    fpr_limit: float = 0.3  # AUPRO integration limit
    tile_px: int | str | None = None  # banks tile frames (model.fewshot.build_bank); images load at full size
    stages: tuple[int, ...] | None = None  # encoder stages the banks match; None = build_bank's default
    coreset_ratio: float | None = None  # share of each untiled bank's rows kept (greedy k-center); None = build_bank's default, 1 = all

    def __post_init__(self) -> None:
        if not self.shots or any(k < 1 for k in self.shots):
            raise ConfigError(f"shots must be whole numbers >= 1, got {list(self.shots)}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        unknown = [m for m in self.modes if m not in MODES]
        if not self.modes or unknown:
            raise ConfigError(f"unknown mode {unknown[0] if unknown else None!r}; choose from {list(MODES)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.coreset_ratio is not None and not 0.0 < self.coreset_ratio <= 1.0:
            raise ConfigError(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}")


@dataclass(frozen=True)
class DrawResult:
    """Metrics of one (class, mode, k, seed) draw."""

    product_class: str
    mode: str
    shots: int
    seed: int
    metrics: MetricSet
    references: tuple[str, ...]  # paths of the reference images used


@dataclass(frozen=True)
class Summary:
    """Mean and (population) std over draws, per metric."""

    mean: MetricSet
    std: MetricSet
    draws: int


@dataclass(frozen=True)
class Example:
    """One test image kept for overlays: a hit (right decision) or a miss (wrong decision)."""

    product_class: str
    mode: str
    shots: int
    path: str
    image: np.ndarray  # (S, S, 3) uint8 RGB
    anomaly_map: np.ndarray  # (S, S) float32
    mask: np.ndarray  # (S, S) uint8 ground truth
    label: int
    decision: bool
    score: float

    @property
    def is_hit(self) -> bool:
        """True when the decision matches the label."""
        return bool(self.decision) == bool(self.label)


@dataclass
class Curve:
    """Curves of the first draw per (mode, k): labels and image scores, for ROC plots."""

    labels: np.ndarray
    scores: np.ndarray


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate` measured; see :mod:`training.report` to write it out."""

    config: EvalConfig
    dataset_root: str
    layout: str
    encoder_name: str
    classes: tuple[str, ...]
    draws: list[DrawResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # mode -> reason
    curves: dict[tuple[str, str, int], Curve] = field(default_factory=dict)  # (class, mode, k)
    examples: list[Example] = field(default_factory=list)
    llm: dict | None = None  # training.llm_eval.llm_report(...) when run with --llm

    def settings(self) -> list[tuple[str, int]]:
        """(mode, k) pairs that have results, in config order."""
        done = {(d.mode, d.shots) for d in self.draws}
        return [(m, k) for m in self.config.modes for k in self.config.shots if (m, k) in done]

    def summary(self, product_class: str, mode: str, shots: int) -> Summary:
        """Mean ± std over the draws of one class and setting."""
        rows = [d.metrics for d in self.draws if (d.product_class, d.mode, d.shots) == (product_class, mode, shots)]
        return _summarise(rows)

    def macro(self, mode: str, shots: int) -> Summary:
        """Per draw seed: mean over classes (NaN ignored); then mean ± std over the seeds."""
        per_seed: dict[int, list[MetricSet]] = {}
        for d in self.draws:
            if (d.mode, d.shots) == (mode, shots):
                per_seed.setdefault(d.seed, []).append(d.metrics)
        means = [MetricSet(**{n: nan_mean([getattr(m, n) for m in rows]) for n in METRIC_NAMES}) for rows in per_seed.values()]
        return _summarise(means)


def _summarise(rows: list[MetricSet]) -> Summary:
    mean = MetricSet(**{n: nan_mean([getattr(r, n) for r in rows]) for n in METRIC_NAMES})
    std = MetricSet(**{n: nan_std([getattr(r, n) for r in rows]) for n in METRIC_NAMES})
    return Summary(mean, std, len(rows))


def draw_references(data: ClassData, shots: int, seed: int) -> list[int]:
    """Indices into ``data.train`` of ``shots`` references for draw ``seed`` (sorted, deterministic).

    Draw ``seed`` takes window ``seed`` of a permutation seeded by ``shots``: draws 0, 1, ... are
    disjoint until the training images run out, then wrap around.

    >>> from pathlib import Path
    >>> from training.datasets import ClassData, Sample
    >>> d = ClassData("c", tuple(Sample(Path(f"{i}.png"), "c", 0, "good") for i in range(10)), (), False)
    >>> draw_references(d, 3, 0) == draw_references(d, 3, 0)
    True
    """
    if shots > len(data.train):
        raise DatasetError(f"class {data.name!r} has {len(data.train)} normal training images, fewer than {shots} shots")
    # one seeded permutation per k, consecutive windows per draw: draws are disjoint while images last
    order = np.random.default_rng([shots, 7919]).permutation(len(data.train))
    start = (seed * shots) % len(data.train)
    return sorted(int(order[(start + j) % len(order)]) for j in range(shots))


def evaluate(
    dataset: AnomalyDataset,
    encoder,  # model.encoders.base.ImageEncoder
    config: EvalConfig = EvalConfig(),  # noqa: B008 (frozen dataclass)
    *,
    zero_shot_maps: ZeroShotMaps | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Run the protocol on every class of ``dataset``; ``zero_shot_maps`` enables zero_shot / fused.

    Example (few-shot, one class, one draw)::

        result = evaluate(load_dataset(root), build_encoder("efficientnet-lite0"), EvalConfig(shots=(1,), seeds=1))
        result.macro("few_shot", 1).mean.image_auroc
    """
    from tqdm import tqdm

    from model.decoder import fuse
    from model.detector import ZERO_SHOT_THRESHOLD
    from model.factory import build_detector

    size = encoder.image_size_px
    result = EvaluationResult(config, str(dataset.root), dataset.layout, encoder.name, tuple(dataset.classes))
    modes = list(config.modes)
    if zero_shot_maps is None:
        for mode in ("zero_shot", "fused"):
            if mode in modes:
                result.skipped[mode] = NO_DECODER_REASON
                modes.remove(mode)
    for data in dataset.classes.values():  # fail before any work if a class lacks references
        for k in config.shots:
            if "few_shot" in modes or "fused" in modes:
                draw_references(data, k, 0)
    detector = build_detector(encoder=encoder)
    load_px = None if config.tile_px is not None else size  # tiled banks see the camera's full frame
    for name, data in dataset.classes.items():
        test = data.test[: config.max_test_images] if config.max_test_images else data.test
        labels = np.array([s.label for s in test], np.int64)
        images = [s.load_image(load_px) for s in test]
        masks = np.stack([s.load_mask(load_px) for s in test]) if data.has_masks else None
        zero = None
        steps = len(config.shots) * config.seeds * len([m for m in modes if m != "zero_shot"]) + ("zero_shot" in modes)
        with tqdm(total=steps, desc=name, unit="draw", disable=not progress, leave=False) as bar:
            if zero_shot_maps is not None:
                zero = np.asarray(zero_shot_maps(images, name), np.float32)  # (N, S, S)
                if "zero_shot" in modes:
                    z_scores = zero.reshape(len(images), -1).max(axis=1)
                    metrics = _metrics(labels, z_scores, z_scores > ZERO_SHOT_THRESHOLD, masks, zero, config)
                    for k in config.shots:  # independent of k: the same numbers for every k
                        _record(result, data, "zero_shot", k, 0, metrics, (), labels, z_scores)
                    _keep_examples(result, name, "zero_shot", config.shots[0], test, images, zero, masks,
                                   labels, z_scores > ZERO_SHOT_THRESHOLD, z_scores)
                    bar.update(1)
            for k in config.shots:
                for seed in range(config.seeds):
                    few = [m for m in modes if m in ("few_shot", "fused")]
                    if not few:
                        continue
                    refs = draw_references(data, k, seed)
                    maps, scores, decisions, thresholds = _few_shot(detector, encoder, data, refs, images, name, seed, config)
                    paths = tuple(str(data.train[i].path) for i in refs)
                    for mode in few:
                        if mode == "fused":  # what the stream does with map_fusion=mean (model/detector.py)
                            maps_m = fuse(zero / ZERO_SHOT_THRESHOLD, maps / thresholds[:, None, None], "mean")
                            scores_m = maps_m.reshape(len(images), -1).max(axis=1)
                            decisions_m = scores_m > 1.0
                        else:
                            maps_m, scores_m, decisions_m = maps, scores, decisions
                        metrics = _metrics(labels, scores_m, decisions_m, masks, maps_m, config)
                        _record(result, data, mode, k, seed, metrics, paths, labels, scores_m)
                        if seed == 0 and k == config.shots[0]:
                            _keep_examples(result, name, mode, k, test, images, maps_m, masks, labels,
                                           decisions_m, scores_m)
                        bar.update(1)
        log.info("evaluated class %r: %d test images", name, len(test))
    return result


def _few_shot(detector, encoder, data: ClassData, refs: list[int], images, name: str, seed: int, config: EvalConfig):
    from model.fewshot import build_bank

    size = None if config.tile_px is not None else encoder.image_size_px
    references = [data.train[i].load_image(size) for i in refs]
    rotations = config.rotations
    if rotations is None:
        from training.synthetic import PRODUCT_CLASSES, rotations_ok

        rotations = rotations_ok(name) if name in PRODUCT_CLASSES else True
    bank = build_bank(encoder, references, name, 1, rotations=rotations, seed=seed, tile_px=config.tile_px,
                      **({"coreset_ratio": config.coreset_ratio} if config.coreset_ratio is not None else {}),
                      **({"stages": config.stages} if config.stages is not None else {}))
    frames = []
    for start in range(0, len(images), config.batch_size):
        frames.extend(detector.score_batch(images[start : start + config.batch_size], bank))
    maps = np.stack([f.anomaly_map for f in frames]).astype(np.float32)
    scores = np.array([f.score for f in frames], np.float64)
    decisions = np.array([f.is_anomalous for f in frames], bool)
    thresholds = np.array([f.threshold for f in frames], np.float32)
    return maps, scores, decisions, thresholds


_PIXEL_METRIC_PX = 256  # pixel AUROC / AUPRO of large frames are computed on maps and masks brought to this side


def _at_metric_resolution(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks resized (nearest) to the maps' shape; both brought down to _PIXEL_METRIC_PX when larger."""
    import cv2

    height, width = maps.shape[1:]
    scale = min(1.0, _PIXEL_METRIC_PX / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if masks.shape[1:] != (size[1], size[0]):
        masks = np.stack([cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) for m in masks])
    if maps.shape[1:] != (size[1], size[0]):
        maps = np.stack([cv2.resize(m, size, interpolation=cv2.INTER_AREA) for m in maps])
    return masks, maps


def _metrics(labels, scores, decisions, masks, maps, config: EvalConfig) -> MetricSet:
    if masks is not None:
        masks, maps = _at_metric_resolution(masks, np.asarray(maps, np.float32))
    has_pixels = masks is not None and bool(masks.any())
    return MetricSet(
        image_auroc=image_auroc(labels, scores),
        pixel_auroc=pixel_auroc(masks, maps) if has_pixels else float("nan"),
        aupro=aupro(masks, maps, config.fpr_limit) if has_pixels else float("nan"),
        f1_max=f1_max(labels, scores),
        accuracy=accuracy(labels, decisions),
        **confusion(labels, decisions),
    )


def _record(result: EvaluationResult, data: ClassData, mode: str, k: int, seed: int, metrics: MetricSet,
            paths: tuple[str, ...], labels: np.ndarray, scores: np.ndarray) -> None:
    result.draws.append(DrawResult(data.name, mode, k, seed, metrics, paths))
    if seed == 0:
        result.curves[(data.name, mode, k)] = Curve(labels.copy(), np.asarray(scores, np.float64).copy())


def _keep_examples(result: EvaluationResult, name: str, mode: str, k: int, test, images, maps, masks, labels,
                   decisions, scores) -> None:
    hits = [i for i in range(len(test)) if bool(decisions[i]) == bool(labels[i])]
    misses = [i for i in range(len(test)) if bool(decisions[i]) != bool(labels[i])]
    hits.sort(key=lambda i: -int(labels[i]))  # defective hits first: they show a heat map worth seeing
    n = result.config.examples_per_kind
    for i in hits[:n] + misses[:n]:
        import cv2

        size = (maps[i].shape[1], maps[i].shape[0])
        mask = masks[i] if masks is not None else np.zeros(maps[i].shape, np.uint8)
        mask = mask if mask.shape == maps[i].shape else cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        image = images[i] if images[i].shape[:2] == maps[i].shape else cv2.resize(images[i], size, interpolation=cv2.INTER_AREA)
        result.examples.append(
            Example(name, mode, k, str(test[i].path), image, maps[i], mask, int(labels[i]), bool(decisions[i]),
                    float(scores[i]))
        )


def decoder_maps_from_checkpoint(checkpoint, encoder, batch_size: int = 16) -> ZeroShotMaps:
    """A :data:`ZeroShotMaps` function from a trained checkpoint folder or its decoder file.

    F_text per class comes from :func:`model.text_anchors.text_embedder_for` (the prompts of docs/method.md),
    through :func:`model.zero_shot.load_zero_shot_head`, the head the stream uses. Raises
    :class:`ConfigError` naming the file when it does not fit ``encoder``.
    """
    import torch

    from model.exceptions import ModelError
    from model.zero_shot import load_zero_shot_head

    try:
        head = load_zero_shot_head(checkpoint, encoder)
    except ModelError as exc:
        raise ConfigError(f"--decoder {str(checkpoint)!r}: {exc}") from None

    @torch.inference_mode()
    def maps(images: Sequence[np.ndarray], product_class: str) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            features = encoder(encoder.preprocess(list(images[start : start + batch_size]))).patch_features
            out.append(head.maps(features, product_class).cpu().numpy())  # (B, S, S)
        return np.concatenate(out).astype(np.float32)

    return maps
