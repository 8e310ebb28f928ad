"""Build a calibrated per-class memory bank from k normal images (no manual threshold).

1. Bank: patch embeddings (see :func:`model.anomaly_map.patch_embeddings`) of the chosen encoder
   stages of every shot, and of its 90/180/270-degree rotations when the class tolerates them;
   a greedy coreset of whole-frame banks (``DEFAULT_CORESET_RATIO``). Shots larger than the model
   input are tiled (``tile_px``): each row keeps the tile it came from, and the stream matches tiles
   by position (model/matching.py).
2. Normal scores: leave-one-out, each shot scored against a bank built without it (what a new
   normal frame looks like to the bank); with a single shot, slightly moved views of it scored
   against its own bank. Scored by the stream's own Detector, on the views as the stream sees
   them (JPEG). With several shots, whole-frame banks add two moved copies per shot
   (``VIEWS_PER_SHOT``) and tiled banks none (``TILED_VIEWS_PER_SHOT`` = 0). Tiles are matched by
   position on a fixed camera: moved copies put them above the aligned test normals and pulled the
   threshold up to the real defects' level (realistic benchmark, 4 shots, stages 0+1, no edge band:
   brick leave-one-out shots 0.223-0.261, moved copies 0.235-0.334, test normals median 0.257; china
   0.245-0.353, 0.282-0.314, 0.250; README "Detection on real photographs"). Whole frames at the model
   input jitter (parts shift and turn on the belt): leave-one-out shots alone sat below the demo's
   normal frames and ``make demo`` flagged 208 frames at precision 0.495; 1 copy: 151 at 0.682; 2 copies:
   108 at 0.907 (README "Stream: make demo (2026-12-02)").
   A leave-one-out score comes from a bank of k-1 shots and overstates what a normal frame scores
   against all k. Tiled banks of k >= 3 shots (``LEAVE_ONE_OUT_BIAS_MIN_SHOTS``) lower their normal
   scores by the rise measured one step further (each shot against banks without it and one other,
   k-2 shots), taken as the rise from k to k-1. Realistic benchmark, 4 shots (brick, china, coffee,
   retina): rises 0.015-0.018; macro accuracy 82.5 -> 85.0, precision 97.7 -> 95.8, recall 67.5 -> 75.0
   (README "Detection on real photographs"). Whole-frame banks keep their threshold: their moved
   copies already calibrate them, and a lower threshold cost the demo its precision (above).
3. Anomaly scores: synthetic defects (model/defects.py) at reduced contrast (real defects are
   subtler than bold synthetic ones), injected into the shots, scored the same way.
4. Threshold: :func:`model.calibration.choose_threshold` on the two score sets, stored in the bank;
   a tiled bank of k >= 2 shots never goes below the largest leave-one-out score of a shot itself (no
   normal shot of the operator's is flagged). Realistic benchmark, motorcycle, 4 shots: its synthetic
   defects scored from 0.197, below every shot, and the balanced-accuracy threshold 0.217 flagged 9 of
   10 normal test frames; the floor (0.261) flags 4, accuracy 0.50 -> 0.65; no other class of that
   benchmark hit it. Whole-frame banks have no floor: on ``make demo`` it raised grass's threshold
   (precision 0.71 -> 0.83, recall 0.60 -> 0.50; all classes 0.907 / 0.867 -> 0.932 / 0.850), and
   ``eval --synthetic`` did not move.
5. Pixel residual (model/registration.py), tiled banks of k >= 2 shots that register to each other:
   the same normal views and defective copies are scored by the residual against the other shots'
   references; the residual's own threshold comes from the same rule, and the bank keeps it with
   w = threshold / residual threshold (the map is max(M, min(1, w R))), so a frame is flagged when
   either the features or the pixels exceed their own calibration. It is kept only if on its own it
   lifts at least half of the calibration defects above every normal view (``RESIDUAL_MIN_LIFT``):
   parts that differ by nature leave a residual everywhere. Realistic benchmark, 8 classes, 4 shots:
   README "Detection on real photographs (2026-12-08)".

>>> from model.encoders.efficientnet import EfficientNetLiteEncoder
>>> from training.synthetic import normal_images
>>> bank = build_bank(EfficientNetLiteEncoder(), normal_images("gravel", 4), "gravel", 1)
>>> bank.shots, bank.calibration.threshold > 0
(4, True)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from model.anomaly_map import patch_embeddings
from model.bank import MemoryBank
from model.calibration import choose_threshold
from model.coreset import coreset_size, greedy_coreset
from model.defects import random_defect
from model.detector import Detector, edge_band_px, map_shape, residual_on_map
from model.encoders.base import ImageEncoder
from model.exceptions import BankBuildError, ShapeError
from model.registration import ReferenceSet
from model.tiling import DEFAULT_OVERLAP, TileGrid

__all__ = [
    "ANOMALIES_PER_BANK",
    "AUTO_TILE_FACTOR",
    "DEFAULT_BANK_STAGES",
    "LEAVE_ONE_OUT_BIAS_MIN_SHOTS",
    "RESIDUAL_MIN_LIFT",
    "RESIDUAL_MIN_SHOTS",
    "SINGLE_SHOT_VIEWS",
    "TILED_VIEWS_PER_SHOT",
    "augmented_views",
    "build_bank",
    "extend_bank",
    "resolve_tile_px",
    "subtle",
    "transport_round_trip",
]

log = logging.getLogger(__name__)

ANOMALIES_PER_BANK = 16  # synthetic-defect images scored per calibration (spread over the shots)
SINGLE_SHOT_VIEWS = 8  # augmented normal views scored when there is only one shot
VIEWS_PER_SHOT = 2  # moved normal views per shot scored leave-one-out when there are several (whole-frame banks)
TILED_VIEWS_PER_SHOT = 0  # the same for tiled banks: none (see the module docstring)
LEAVE_ONE_OUT_BIAS_MIN_SHOTS = 3  # tiled banks of this many shots correct their leave-one-out normals (docstring)
TRANSPORT_JPEG_QUALITY = 90  # cameras send JPEG (connectors.schema.encode_image's default quality)
_VIEW_ZOOM = 1.12  # augmented views: zoom that keeps shifted/rotated content inside the frame
_MILD_VIEW_ZOOM = 1.03  # mild views (tiled banks): 1 % shift and 0.5 deg stay inside the frame
DEFAULT_BANK_STAGES: tuple[int, ...] | None = None  # encoder stages matched; None = all of them
# Whole-frame banks keep a greedy k-center coreset of a quarter of their rows per stage (PatchCore).
# The rows are k shots x 4 rotations of overlapping patches, mostly near-duplicates. Measured on the
# demo classes (`linesight eval --synthetic --shots 1 4 --seeds 2 [--coreset-ratio R]`, 2026-12-07),
# macro image AUROC / accuracy, k=1 and k=4: all rows 94.5 / 88.8 and 97.8 / 92.1; 0.5: 95.0 / 89.2
# and 98.3 / 92.5; 0.25: 95.2 / 91.3 and 98.1 / 91.2 (precision / recall of the automatic decision,
# all rows -> 0.25: k=1 91.3 / 91.7 -> 93.5 / 90.0, k=4 99.0 / 85.0 -> 98.2 / 84.2). The lookup, the largest share of a frame's
# time, shrinks with the rows (README "make bench (2026-12-07)"). Tiled banks match by position
# and keep every row.
DEFAULT_CORESET_RATIO: float | None = 0.25
# Measured on the realistic benchmark (4 shots, tiled 224 px, image AUROC, brick china coffee retina):
# without the edge band, stages 0+1 ranked best (84.5 against 82.0 for all four; stage 0 alone 82.2,
# 0+2 83.8, 0+1+2 83.5); with the edge band (model/detector.py) all four rank best (88.8 against
# 86.8 for 0+1), so all four stay the default. README "Detection on real photographs".
RESIDUAL_MIN_SHOTS = 2  # the pixel residual needs an independent normal exposure to calibrate on
RESIDUAL_MIN_LIFT = 0.5  # ... and is kept when, on its own, it lifts this much of the calibration defects above every normal
AUTO_TILE_FACTOR = 1.5  # tile_px="auto": tile at the model input size when shots are this much larger
_DEFECT_STRENGTH = (0.25, 0.6)  # calibration defects keep this fraction of their bold contrast


def augmented_views(image: np.ndarray, count: int, rng: np.random.Generator, *, mild: bool = False) -> list[np.ndarray]:
    """``count`` slightly moved copies of a normal image: shift +-4..12 px (at 224), rotation +-3 deg,
    brightness +-6 %; ``mild``: what a fixed camera over a conveyor varies by (shift up to 1 % of the
    side, rotation +-0.5 deg, brightness +-3 %), for tiled banks, whose tiles are matched by position.

    The copy is zoomed in (12 %, mild: 3 %) so that the shift and rotation never expose the border (a
    reflected border would be a pattern no camera sees, and would inflate the normal scores).

    >>> len(augmented_views(np.zeros((64, 64, 3), np.uint8), 3, np.random.default_rng(0)))
    3
    """
    height, width = image.shape[:2]
    views = []
    for _ in range(count):
        if mild:
            shift = rng.uniform(-0.01, 0.01, 2) * np.array([width, height])
            angle, zoom, gain = float(rng.uniform(-0.5, 0.5)), _MILD_VIEW_ZOOM, rng.uniform(0.97, 1.03)
        else:
            shift = rng.uniform(4, 12, 2) * (width / 224.0) * rng.choice([-1, 1], 2)
            angle, zoom, gain = float(rng.uniform(-3, 3)), _VIEW_ZOOM, rng.uniform(0.94, 1.06)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, zoom)
        matrix[:, 2] += shift
        moved = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        views.append(np.clip(moved.astype(np.float32) * gain, 0, 255).astype(np.uint8))
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


def resolve_tile_px(tile_px: int | str | None, shots: Sequence[np.ndarray], image_size_px: int) -> int | None:
    """``tile_px`` as a number of frame pixels or None (whole frame); "auto" tiles at the model input
    size when the shots' longer side exceeds ``AUTO_TILE_FACTOR`` times it.

    >>> resolve_tile_px("auto", [np.zeros((1000, 1200, 3), np.uint8)], 448), resolve_tile_px("auto", [np.zeros((224, 224, 3), np.uint8)], 224)
    (448, None)
    """
    if tile_px is None:
        return None
    if tile_px == "auto":
        longest = max(max(s.shape[:2]) for s in shots)
        return image_size_px if longest > AUTO_TILE_FACTOR * image_size_px else None
    if not isinstance(tile_px, int) or isinstance(tile_px, bool) or tile_px < 32:
        raise BankBuildError(f"tile_px must be None, 'auto' or a whole number of pixels >= 32, got {tile_px!r}")
    return tile_px


def subtle(image: np.ndarray, defective: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """The defect at a fraction of its contrast (``_DEFECT_STRENGTH``): (image, mask of what still shows)."""
    alpha = float(rng.uniform(*_DEFECT_STRENGTH))
    blended = image.astype(np.float32) + alpha * (defective.astype(np.float32) - image.astype(np.float32))
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    shows = (np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=2) >= 3) & (mask > 0)
    return out, (shows if shows.any() else mask > 0).astype(np.uint8)


def _defective_view(shot: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator,
                    tile_px: int | None) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A copy of ``shot`` with one subtle synthetic defect, sized for a tile (tiled banks) or the frame,
    and the (y, x, height, width) region it was drawn in."""
    if tile_px is None:
        defective, mask, _ = random_defect(shot, rng, sources=others or [shot])
        return subtle(shot, defective, mask, rng)[0], (0, 0, shot.shape[0], shot.shape[1])
    height, width = shot.shape[:2]
    side_y, side_x = min(tile_px, height), min(tile_px, width)
    y, x = int(rng.integers(0, height - side_y + 1)), int(rng.integers(0, width - side_x + 1))
    region = np.ascontiguousarray(shot[y : y + side_y, x : x + side_x])
    sources = [np.ascontiguousarray(o[y : y + side_y, x : x + side_x]) for o in others if o.shape == shot.shape]
    defective, mask, _ = random_defect(region, rng, sources=sources or [region])
    out = shot.copy()
    out[y : y + side_y, x : x + side_x] = subtle(region, defective, mask, rng)[0]
    return out, (y, x, side_y, side_x)


def _region_score(detector: Detector, bank: MemoryBank, frame: np.ndarray, region: tuple[int, int, int, int]) -> float:
    """max(M) over the tiles of a tiled bank's frame that touch ``region`` (y, x, h, w): the score the
    stream gives a defect there, at the cost of a few tiles instead of the whole frame."""
    from model.matching import tile_maps

    grid = TileGrid.for_frame(frame.shape[0], frame.shape[1], bank.tile_px, bank.tile_overlap)
    y, x, h, w = region
    touching = [i for i, (ty, tx, th, tw) in enumerate(grid.boxes) if ty < y + h and y < ty + th and tx < x + w and x < tx + tw]
    tiles = [frame[ty : ty + th, tx : tx + tw] for ty, tx, th, tw in (grid.boxes[i] for i in touching)]
    features = detector.encode_tiles(tiles)
    size = detector.encoder.image_size_px
    maps = tile_maps([features[i] for i in bank.stages], bank.patch_bank(), touching, size)
    band_y, band_x = edge_band_px(frame.shape[0], frame.shape[1])  # the detector does not judge the edge band
    for tile_map, (ty, tx, th, tw) in zip(maps, (grid.boxes[i] for i in touching), strict=True):
        rows = ty + (torch.arange(size) + 0.5) * th / size  # frame coordinates of the map's pixels
        cols = tx + (torch.arange(size) + 0.5) * tw / size
        inside_y = (rows >= band_y) & (rows < frame.shape[0] - band_y)
        inside_x = (cols >= band_x) & (cols < frame.shape[1] - band_x)
        tile_map[~(inside_y[:, None] & inside_x[None, :])] = 0.0
    return float(maps.max())


def _rows(detector: Detector, views: Sequence[np.ndarray], stages: Sequence[int], tile_px: int | None,
          overlap: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Bank rows of some views: per stage (rows, C_i) unit features and (rows,) tile ids."""
    tiles, ids = [], []
    for view in views:
        grid = TileGrid.for_frame(view.shape[0], view.shape[1], tile_px, overlap)
        tiles += grid.cut(view)
        ids += list(range(grid.count))
    features = detector.encode_tiles(tiles)
    rows, tile_ids = [], []
    for stage in stages:
        embedding = patch_embeddings([features[stage]])[0]  # (T, P, C)
        rows.append(embedding.reshape(-1, embedding.shape[-1]))
        tile_ids.append(torch.tensor(ids, dtype=torch.int32).repeat_interleave(embedding.shape[1]))
    return rows, tile_ids


@torch.inference_mode()
def build_bank(
    encoder: ImageEncoder,
    images: Sequence[np.ndarray],
    product_class: str,
    version: int,
    *,
    rotations: bool = True,
    coreset_ratio: float | None = DEFAULT_CORESET_RATIO,
    seed: int = 0,
    jpeg_quality: int | None = TRANSPORT_JPEG_QUALITY,
    stages: Sequence[int] | None = DEFAULT_BANK_STAGES,
    tile_px: int | str | None = None,
    tile_overlap: float = DEFAULT_OVERLAP,
) -> MemoryBank:
    """A calibrated :class:`MemoryBank` from k >= 1 normal uint8 RGB images of one class.

    ``rotations`` adds the 90/180/270-degree rotations of every shot to the bank (textures and
    round parts tolerate them; oriented parts do not; ignored for tiled banks, which match by
    position). ``coreset_ratio`` in (0, 1] keeps that fraction of bank rows per stage (greedy
    k-center; untiled banks only; None or 1 keeps them all; default ``DEFAULT_CORESET_RATIO``).
    ``stages`` picks the encoder stages matched (None: all).
    ``tile_px`` (None, "auto" or frame pixels) tiles shots larger than the model input; all shots
    of a tiled bank are brought to the first shot's size. Deterministic for a given ``seed``.
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
    tile_px = resolve_tile_px(tile_px, shots, size)
    stages = tuple(range(len(encoder.stage_channels))) if stages is None else tuple(int(i) for i in stages)
    if not stages or any(not 0 <= i < len(encoder.stage_channels) for i in stages) or len(set(stages)) != len(stages):
        raise BankBuildError(
            f"stages must be distinct encoder stage indices in [0, {len(encoder.stage_channels) - 1}], got {list(stages)}"
        )
    frame_size = None
    if tile_px is None:
        shots = [cv2.resize(s, (size, size), interpolation=cv2.INTER_AREA) if s.shape[:2] != (size, size) else s
                 for s in shots]
    else:
        frame_size = shots[0].shape[:2]
        shots = [s if s.shape[:2] == frame_size else cv2.resize(s, frame_size[::-1], interpolation=cv2.INTER_AREA)
                 for s in shots]
        rotations, coreset_ratio = False, None  # positional matching: tiles stay where they are
    if coreset_ratio == 1.0:
        coreset_ratio = None  # every row
    turns = (0, 1, 2, 3) if rotations else (0,)
    rng = np.random.default_rng([seed, 31337])
    detector = Detector(encoder)

    def bank_of(rows, tile_ids, calibration, **residual) -> MemoryBank:
        return MemoryBank(
            rows, product_class=product_class, version=version, shots=len(shots), encoder_name=encoder.name,
            image_size_px=size, calibration=calibration, stages=stages, tile_px=tile_px, tile_overlap=tile_overlap,
            frame_size=frame_size, tile_ids=tile_ids if tile_px is not None else None, **residual,
        )

    per_shot = [
        _rows(detector, [np.ascontiguousarray(np.rot90(shot, turn)) for turn in turns], stages, tile_px, tile_overlap)
        for shot in shots
    ]

    def merged(indices: Sequence[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        rows = [torch.cat([per_shot[j][0][i] for j in indices]) for i in range(len(stages))]
        ids = [torch.cat([per_shot[j][1][i] for j in indices]) for i in range(len(stages))]
        if coreset_ratio is not None:
            keep = [greedy_coreset(r, coreset_size(r.shape[0], coreset_ratio), seed=seed + i) for i, r in enumerate(rows)]
            rows, ids = [r[k] for r, k in zip(rows, keep, strict=True)], [t[k] for t, k in zip(ids, keep, strict=True)]
        return rows, ids

    placeholder = choose_threshold([0.0], [1.0])  # replaced below; scoring ignores it
    full_rows, full_ids = merged(range(len(shots)))

    # calibration: per shot, normal views (the shot and slightly moved copies) and subtly defective
    # copies, as the stream sees them (JPEG), scored by the stream's detector against a bank
    # without that shot (leave-one-out; with one shot, against the full bank)
    defects_per_shot = max(2, -(-ANOMALIES_PER_BANK // len(shots)))
    normal_scores: list[float] = []
    anomaly_scores: list[float] = []
    shot_scores: list[float] = []  # each shot itself, leave-one-out (the first normal view of each shot)
    residual = _ResidualScores(shots, tile_px, size, tile_overlap, product_class)
    several = TILED_VIEWS_PER_SHOT if tile_px is not None else VIEWS_PER_SHOT
    for index, shot in enumerate(shots):
        others = [s for i, s in enumerate(shots) if i != index]
        normals = [shot, *augmented_views(shot, several if others else SINGLE_SHOT_VIEWS, rng,
                                          mild=tile_px is not None)]
        defective = [_defective_view(shot, others, rng, tile_px) for _ in range(defects_per_shot)]
        bank = bank_of(*merged([j for j in range(len(shots)) if j != index]), placeholder) if others else \
            bank_of(full_rows, full_ids, placeholder)
        views = [transport_round_trip(view, jpeg_quality) for view in normals]
        scored = [r.score for r in detector.score_batch(views, bank)]
        normal_scores += scored
        shot_scores.append(scored[0])
        broken = [transport_round_trip(view, jpeg_quality) for view, _ in defective]
        residual.score(index, views, broken)
        if tile_px is None:
            anomaly_scores += [r.score for r in detector.score_batch(broken, bank)]
        else:  # only the tiles around each defect: a frame of hundreds of tiles costs a few
            anomaly_scores += [_region_score(detector, bank, view, region)
                               for view, (_, region) in zip(broken, defective, strict=True)]
    if tile_px is not None and len(shots) >= LEAVE_ONE_OUT_BIAS_MIN_SHOTS:
        bias = _leave_one_out_bias(detector, shots, shot_scores, lambda keep: bank_of(*merged(keep), placeholder),
                                   jpeg_quality)
        log.info("bank %s: leave-one-out normals lowered by %.4f (one shot fewer raised them that much)",
                 product_class, bias)
        normal_scores = [score - bias for score in normal_scores]
        shot_scores = [score - bias for score in shot_scores]
    floor = max(shot_scores) if tile_px is not None and len(shots) > 1 else None  # never flag a shot (tiled banks)
    calibration = choose_threshold(normal_scores, anomaly_scores, floor=floor)
    weight = residual.weight(calibration.threshold, normal_scores, anomaly_scores)
    if weight is None:
        return bank_of(full_rows, full_ids, calibration)
    try:
        references = ReferenceSet.from_shots(shots)
    except ShapeError as exc:  # every leave-one-out set registered, all shots together did not
        log.info("bank %s: no pixel residual (%s)", product_class, exc)
        return bank_of(full_rows, full_ids, calibration)
    return bank_of(full_rows, full_ids, calibration, references=torch.from_numpy(references.shots),
                   reference_warps=torch.from_numpy(references.warps), residual_weight=weight)


class _ResidualScores:
    """The pixel residual's calibration (model/registration.py): per shot, its normal views and defective
    copies against references without it; kept where, on its own, it lifts at least ``RESIDUAL_MIN_LIFT``
    of those defects above every normal view.

    Only tiled banks (a fixed camera) of at least ``RESIDUAL_MIN_SHOTS`` shots that register to each other.
    """

    def __init__(self, shots: list[np.ndarray], tile_px: int | None, size_px: int, overlap: float,
                 product_class: str) -> None:
        self.shots, self.product_class = shots, product_class
        self.active = tile_px is not None and len(shots) >= RESIDUAL_MIN_SHOTS
        self.shape = map_shape(TileGrid.for_frame(*shots[0].shape[:2], tile_px, overlap), size_px) if self.active else None
        self.normals: list[float] = []
        self.anomalies: list[float] = []
        self.firsts: list[float] = []

    def _max(self, references: ReferenceSet, frame: np.ndarray) -> float | None:
        residual = residual_on_map(references, frame, self.shape)
        if residual is None:
            return None
        rows, cols = edge_band_px(*self.shape)  # the detector does not judge the edge band
        return float(residual[rows : self.shape[0] - rows, cols : self.shape[1] - cols].max())

    def score(self, index: int, normals: Sequence[np.ndarray], broken: Sequence[np.ndarray]) -> None:
        """Residual scores of shot ``index``'s normal views (the shot first) and defective copies."""
        if not self.active:
            return
        try:
            references = ReferenceSet.from_shots([s for i, s in enumerate(self.shots) if i != index])
        except ShapeError as exc:
            log.info("bank %s: no pixel residual (%s)", self.product_class, exc)
            self.active = False
            return
        normal = [self._max(references, view) for view in normals]
        anomaly = [self._max(references, view) for view in broken]
        if any(score is None for score in normal + anomaly):
            log.info("bank %s: no pixel residual (a view of shot %d did not register)", self.product_class, index)
            self.active = False
            return
        self.normals += normal  # type: ignore[arg-type]
        self.anomalies += anomaly  # type: ignore[arg-type]
        self.firsts.append(normal[0])  # type: ignore[arg-type]

    def weight(self, threshold: float, feature_normals: Sequence[float], feature_anomalies: Sequence[float]) -> float | None:
        """w = the features' threshold / the residual's own (chosen the same way, floored at the shots' own
        residual), so that w * R crosses the bank's threshold where R crosses its own; None if not kept."""
        if not self.active:
            return None
        own = _lifted(self.normals, self.anomalies)
        keep = own >= RESIDUAL_MIN_LIFT
        log.info("bank %s: pixel residual %s: on its own it lifts %.0f %% of the calibration defects above every "
                 "normal view, the features %.0f %%", self.product_class, "kept" if keep else "not kept", 100 * own,
                 100 * _lifted(feature_normals, feature_anomalies))
        if not keep:
            return None
        residual_threshold = choose_threshold(self.normals, self.anomalies, floor=max(self.firsts)).threshold
        return threshold / residual_threshold if residual_threshold > 0 else None


def _lifted(normals: Sequence[float], anomalies: Sequence[float]) -> float:
    """Fraction of ``anomalies`` above every normal score."""
    top = max(normals)
    return sum(a > top for a in anomalies) / max(1, len(anomalies))


def _leave_one_out_bias(detector: Detector, shots: list[np.ndarray], shot_scores: list[float],
                        bank_without: Callable[[list[int]], MemoryBank], jpeg_quality: int | None) -> float:
    """How much a leave-one-out score overstates a normal frame's score against all k shots: the mean rise from
    k-1 to k-2 references (each shot against banks without it and one other), taken as the rise from k to
    k-1; >= 0 (see the module docstring)."""
    fewer: list[float] = []
    for index, shot in enumerate(shots):
        view = transport_round_trip(shot, jpeg_quality)
        for other in range(len(shots)):
            if other != index:
                keep = [j for j in range(len(shots)) if j not in (index, other)]
                fewer.append(detector.score_batch([view], bank_without(keep))[0].score)
    return max(0.0, float(np.mean(fewer) - np.mean(shot_scores)))


@torch.inference_mode()
def extend_bank(
    encoder: ImageEncoder, bank: MemoryBank, images: Sequence[np.ndarray], frame_ids: Sequence[str], version: int
) -> MemoryBank:
    """A new version of ``bank`` whose references also hold ``images`` (frames an operator marked as
    false alarms), matched the way the bank matches (its stages, its tiling); the calibration is
    kept: the new rows only lower the scores of frames like these, so the threshold stays valid
    for every other frame. ``frame_ids`` are recorded in the bank (``learned_frames``).
    """
    if not images:
        raise BankBuildError(f"bank {bank.key}: no frames to learn from")
    if len(images) != len(frame_ids):
        raise BankBuildError(f"bank {bank.key}: {len(images)} frames but {len(frame_ids)} frame ids")
    size = encoder.image_size_px
    if bank.tile_px is None:
        views = [cv2.resize(i, (size, size), interpolation=cv2.INTER_AREA) if i.shape[:2] != (size, size) else i
                 for i in images]
    else:
        height, width = bank.frame_size  # type: ignore[misc]
        views = [i if i.shape[:2] == (height, width) else cv2.resize(i, (width, height), interpolation=cv2.INTER_AREA)
                 for i in images]
    rows, ids = _rows(Detector(encoder), views, bank.stages, bank.tile_px, bank.tile_overlap)
    tiled = bank.tile_ids is not None
    references = bank.reference_set()
    if references is not None:  # the frames join the pixel references too
        try:
            references = references.extended(views, [f"frame {frame_id!r}" for frame_id in frame_ids])
        except ShapeError as exc:
            raise BankBuildError(f"bank {bank.key}: a learned frame cannot join the references: {exc}") from None
    return MemoryBank(
        [torch.cat([old, new]) for old, new in zip(bank.stage_features, rows, strict=True)],
        product_class=bank.product_class, version=version, shots=bank.shots + len(views),
        encoder_name=bank.encoder_name, image_size_px=bank.image_size_px, calibration=bank.calibration,
        stages=bank.stages, tile_px=bank.tile_px, tile_overlap=bank.tile_overlap, frame_size=bank.frame_size,
        tile_ids=[torch.cat([old, new]) for old, new in zip(bank.tile_ids, ids, strict=True)] if tiled else None,
        learned_frames=(*bank.learned_frames, *frame_ids),
        references=None if references is None else torch.from_numpy(references.shots),
        reference_warps=None if references is None else torch.from_numpy(references.warps),
        residual_weight=bank.residual_weight,
    )
