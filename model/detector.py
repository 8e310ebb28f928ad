"""Detector: encoder -> memory bank and/or text-aligned decoder -> anomaly map -> decision, regions, verdict.

The encoder runs once per batch, even when the batch mixes product classes; each class's bank is
then matched against its own rows. A tiled bank that carries references (a fixed camera; model/registration.py)
adds the pixel residual of the frame against them: M = max(M, min(1, w * R)) with the bank's
``residual_weight`` w, per frame pixel of the map. Decision: image score max(M) > threshold; the mask is
M > threshold, so an anomalous frame always has at least one region. A tiled bank's map is 0 in
the frame's edge band (``EDGE_BAND_FRACTION`` of each side), which is not judged. Three ways to get M:

- few-shot (default, ``fusion="few_only"``): M_few against the bank; threshold = the bank's
  calibrated one.
- fused (``fusion="mean"`` or ``"max"``, needs a :class:`ZeroShotHead`): both maps divided by their
  own thresholds, then combined; threshold 1. Measured on the demo classes, few-only scores best
  (README), hence the default.
- zero-shot (:meth:`Detector.score_zero_shot`, no bank: a new class): M_zero from the trained
  decoder; threshold 0.5, where "abnormal" beats "normal" in its softmax.
- cold start (:meth:`Detector.score_cold_start`, no bank, no label): M from mutual scoring against
  the class's recent frames (model/mutual_window.py); threshold from their own scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np
import torch

from model.bank import MemoryBank
from model.decoder import fuse
from model.encoders.base import ImageEncoder
from model.exceptions import BankFileError, ModelError, ShapeError
from model.matching import tile_maps
from model.mutual_window import MutualWindow
from model.positions import find_regions
from model.registration import ReferenceSet
from model.tiling import TileGrid, map_size, stitch
from model.verdict import verdict_sentence
from model.zero_shot import ZeroShotHead

__all__ = ["DETECTOR_FUSIONS", "EDGE_BAND_FRACTION", "MAP_MAX_PX", "ZERO_SHOT_METHOD", "ZERO_SHOT_THRESHOLD", "Detector",
           "FrameScore", "RegionBox", "ZeroShotHead", "edge_band_px", "map_shape", "residual_on_map"]

log = logging.getLogger(__name__)

DETECTOR_FUSIONS: tuple[str, ...] = ("few_only", "mean", "max")
ZERO_SHOT_THRESHOLD = 0.5  # the decoder's softmax: "abnormal" beats "normal"
ZERO_SHOT_METHOD = "zero-shot-softmax-0.5"  # how a zero-shot frame's threshold was set
FUSED_METHOD = "fused-units-of-threshold"  # fused maps: both in units of their own threshold, threshold 1
MAP_MAX_PX = 1024  # a tiled frame's map keeps the frame's aspect ratio, longest side at most this
ENCODE_CHUNK = 32  # tiles per encoder call (bounds memory for frames of hundreds of tiles)
# Tiled banks (a fixed camera) do not judge a band along the frame's edge, this fraction of each side
# wide: parts and camera move a little from frame to frame, so content enters and leaves the view
# there that no reference shows, and the edge is where the normal frames' maxima sat on the realistic
# benchmark (README "Detection on real photographs"). Untiled banks match globally and keep the edge.
EDGE_BAND_FRACTION = 0.04


def edge_band_px(height: int, width: int, fraction: float = EDGE_BAND_FRACTION) -> tuple[int, int]:
    """(rows, columns) of the edge band not judged on a ``height`` x ``width`` map of a tiled bank.

    >>> edge_band_px(683, 1024)
    (27, 41)
    """
    return int(round(fraction * height)), int(round(fraction * width))


def map_shape(grid: TileGrid, size_px: int) -> tuple[int, int]:
    """(h, w) of a frame's map: (S, S) for one tile, else the frame's aspect ratio, longest side <= MAP_MAX_PX.

    >>> map_shape(TileGrid.for_frame(1000, 1500, 448), 224)
    (683, 1024)
    """
    return (size_px, size_px) if grid.count == 1 else map_size(grid.height, grid.width, MAP_MAX_PX)


def residual_on_map(references: ReferenceSet, frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """The pixel residual R of ``frame`` against ``references`` (grey levels), resized to a map of ``shape``
    (h, w); None when the frame does not register (it is then judged by its features alone)."""
    residual = references.residual(frame)
    if residual is None:
        return None
    return cv2.resize(residual, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


class RegionBox(NamedTuple):
    """One anomaly region in full-frame pixels."""

    x: int
    y: int
    width: int
    height: int
    area_px: int
    position: str  # 3x3 name of its centre

    def to_dict(self) -> dict:
        """JSON-able dict (stored in SQL, sent in alerts)."""
        return self._asdict()


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
    verdict: str  # the answer template sentence (docs/method.md)
    regions: tuple[RegionBox, ...] = field(default=())  # full-frame boxes, largest first
    frame_size: tuple[int, int] = (0, 0)  # (height, width) of the scored frame, px
    threshold_method: str = ""  # how the threshold was set: the bank's calibration method, zero-shot, cold start


class Detector:
    """Scores uint8 RGB frames against per-class memory banks with one frozen encoder.

    How a frame is inspected follows its bank: an untiled bank scores the whole frame resized to
    the model input (S x S, as the demo's 224 px frames); a tiled bank cuts the frame into
    ``bank.tile_px`` tiles at the camera's resolution, matches each tile with the same tiles of
    the references (model/matching.py) and stitches one map of the frame (longest side at most
    ``MAP_MAX_PX``). Only the encoder stages the bank holds (``bank.stages``) are matched.

    >>> from model.encoders.efficientnet import EfficientNetLiteEncoder
    >>> from model.fewshot import build_bank
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
        self._unregistered: set[str] = set()  # bank keys that have had a frame that did not register
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
        if any(i >= len(self.encoder.stage_channels) for i in bank.stages):
            problems.append(f"stages {bank.stages} not all in the encoder's {len(self.encoder.stage_channels)}")
        elif tuple(bank.stage_channels) != tuple(self.encoder.stage_channels[i] for i in bank.stages):
            problems.append(
                f"stage channels {bank.stage_channels} != {tuple(self.encoder.stage_channels[i] for i in bank.stages)}"
            )
        if problems:
            raise BankFileError(f"bank {bank.key} does not fit this detector: {'; '.join(problems)}")

    def score_batch(self, images: Sequence[np.ndarray], bank: MemoryBank) -> list[FrameScore]:
        """Score frames of one product class (uint8 RGB (H, W, 3) each) against ``bank``."""
        return self.score_batch_mixed(images, [bank] * len(images))

    @torch.inference_mode()
    def encode_tiles(self, tiles: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Raw stage features per encoder stage (T, C_i, h_i, w_i) of tiles, in chunks of ENCODE_CHUNK."""
        parts: list[tuple[torch.Tensor, ...]] = []
        for start in range(0, len(tiles), ENCODE_CHUNK):
            pixels = self.encoder.preprocess([np.ascontiguousarray(t) for t in tiles[start : start + ENCODE_CHUNK]])
            parts.append(self.encoder(pixels.to(self.device)).patch_features)
        return [torch.cat([p[i] for p in parts]) if len(parts) > 1 else parts[0][i] for i in range(len(parts[0]))]

    @torch.inference_mode()
    def score_batch_mixed(self, images: Sequence[np.ndarray], banks: Sequence[MemoryBank]) -> list[FrameScore]:
        """Score frames of mixed classes; ``banks[i]`` is the bank of ``images[i]``. Encoder runs once over all tiles."""
        if len(images) != len(banks):
            raise ShapeError(f"got {len(images)} images but {len(banks)} banks; need one bank per image")
        if not images:
            return []
        checked: set[int] = set()
        for bank in banks:
            if id(bank) not in checked:
                self.check_bank(bank)
                checked.add(id(bank))
        frames = [_fit_frame(image, bank) for image, bank in zip(images, banks, strict=True)]
        grids = [_grid(frame, bank) for frame, bank in zip(frames, banks, strict=True)]
        tiles, owner, position = [], [], []
        for index, (frame, grid) in enumerate(zip(frames, grids, strict=True)):
            tiles += grid.cut(frame)
            owner += [index] * grid.count
            position += list(range(grid.count))
        features = self.encode_tiles(tiles)  # per stage (T, C_i, h_i, w_i)
        size = self.encoder.image_size_px
        maps_per_tile = torch.empty(len(tiles), size, size)
        thresholds = [float(bank.calibration.threshold) for bank in banks]
        methods = [bank.calibration.method for bank in banks]
        groups: dict[int, list[int]] = {}  # bank identity -> tile rows
        for row, index in enumerate(owner):
            groups.setdefault(id(banks[index]), []).append(row)
        for rows in groups.values():
            bank = banks[owner[rows[0]]].to(self.device)
            select = torch.tensor(rows, device=self.device)
            stage_rows = [f.index_select(0, select) for f in features]
            few = tile_maps([stage_rows[i] for i in bank.stages], bank.patch_bank(), [position[r] for r in rows], size)
            if self.fusion != "few_only":
                zero = self.zero_shot.maps(stage_rows, bank.product_class)  # type: ignore[union-attr]
                few = fuse(zero / ZERO_SHOT_THRESHOLD, few / bank.calibration.threshold, self.fusion)
                for row in rows:
                    thresholds[owner[row]] = 1.0  # both maps are in units of their own threshold
                    methods[owner[row]] = FUSED_METHOD
            maps_per_tile[rows] = few.cpu()
        edges = [bank.tile_px is not None for bank in banks]
        residuals = [self._residual(frame, bank, grid) for frame, bank, grid in zip(frames, banks, grids, strict=True)]
        return self._assemble(images, grids, owner, maps_per_tile, thresholds, methods, edges, residuals)

    def _residual(self, frame: np.ndarray, bank: MemoryBank, grid: TileGrid) -> torch.Tensor | None:
        """A tiled bank's pixel residual of ``frame`` in the units of the frame's map, or None (no references,
        or the frame does not register: logged, and the frame is judged by its features)."""
        references = bank.reference_set()
        if references is None:
            return None
        residual = residual_on_map(references, frame, map_shape(grid, self.encoder.image_size_px))
        if residual is None:  # warned once per bank version (a moved camera would repeat it every frame)
            level = logging.DEBUG if bank.key in self._unregistered else logging.WARNING
            self._unregistered.add(bank.key)
            log.log(level, "a frame of bank %s did not register to its references (camera or part moved?); judged by "
                    "its features alone (further such frames of this bank are logged at DEBUG)", bank.key)
            return None
        units = torch.from_numpy(residual).mul_(bank.residual_weight).clamp_(max=1.0)
        return units / bank.calibration.threshold if self.fusion != "few_only" else units

    @torch.inference_mode()
    def score_zero_shot(self, images: Sequence[np.ndarray], product_classes: Sequence[str]) -> list[FrameScore]:
        """Score frames of classes that have no bank with the trained decoder alone (threshold 0.5; whole frame)."""
        if self.zero_shot is None:
            raise ModelError("zero-shot scoring needs a trained decoder (zero-shot head); none given")
        if len(images) != len(product_classes):
            raise ShapeError(f"got {len(images)} images but {len(product_classes)} classes; need one class per image")
        if not images:
            return []
        features = self.encode_tiles(list(images))
        size = self.encoder.image_size_px
        maps = torch.empty(len(images), size, size)
        groups: dict[str, list[int]] = {}
        for row, name in enumerate(product_classes):
            groups.setdefault(name, []).append(row)
        for name, rows in groups.items():
            index = torch.tensor(rows, device=self.device)
            stage_rows = [f.index_select(0, index) for f in features] if len(groups) > 1 else features
            maps[rows] = self.zero_shot.maps(stage_rows, name).cpu()
        grids = [TileGrid.for_frame(image.shape[0], image.shape[1], None) for image in images]
        return self._assemble(images, grids, list(range(len(images))), maps, [ZERO_SHOT_THRESHOLD] * len(images),
                              [ZERO_SHOT_METHOD] * len(images))

    @torch.inference_mode()
    def score_cold_start(self, images: Sequence[np.ndarray], window: MutualWindow) -> list[FrameScore]:
        """Score frames of ONE class that has no bank against its recent frames (mutual scoring), then add
        them to ``window``; the threshold is the window's (median + 3 MAD of its scores, none in the warm-up)."""
        if not images:
            return []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ShapeError(f"expected uint8 RGB of shape (H, W, 3), got {image.dtype} {tuple(image.shape)}")
        grid = window.fit(images[0].shape[0], images[0].shape[1])
        frames = [_resized(image, (grid.height, grid.width)) for image in images]
        features = self.encode_tiles([tile for frame in frames for tile in grid.cut(frame)])  # per stage (B*T, ...)
        per_frame = [[f[i * grid.count : (i + 1) * grid.count] for f in features] for i in range(len(frames))]
        size = self.encoder.image_size_px
        maps_per_tile = window.tile_maps(per_frame, size)  # (B*T, S, S)
        owner = [index for index in range(len(frames)) for _ in range(grid.count)]
        maps = self._frame_maps([grid] * len(frames), owner, maps_per_tile)
        window.push(per_frame, [float(m.max()) for m in maps])
        threshold, method = window.threshold()
        return [_frame_score(m, threshold, image.shape[:2], size, method) for m, image in zip(maps, images, strict=True)]

    def _frame_maps(self, grids, owner, maps_per_tile, edges=None, residuals=None) -> list[torch.Tensor]:
        """One map per frame: its tile's map (S, S), or its tiles' maps stitched (aspect kept, <= MAP_MAX_PX),
        raised to its ``residuals`` entry where one is given; a frame whose ``edges`` entry is true has its
        edge band set to 0 (tiled banks)."""
        out = []
        for index, grid in enumerate(grids):
            rows = [row for row, o in enumerate(owner) if o == index]
            if grid.count == 1:
                out.append(maps_per_tile[rows[0]])  # (S, S): the whole frame at the model's input size
            else:
                height, width = map_size(grid.height, grid.width, MAP_MAX_PX)
                out.append(stitch(maps_per_tile[rows], grid, height, width))
            if residuals is not None and residuals[index] is not None:
                out[-1] = torch.maximum(out[-1], residuals[index])
            if edges is not None and edges[index]:
                out[-1] = _without_edge_band(out[-1])
        return out

    def _assemble(self, images, grids, owner, maps_per_tile, thresholds, methods, edges=None,
                  residuals=None) -> list[FrameScore]:
        size = self.encoder.image_size_px
        return [
            _frame_score(anomaly_map, thresholds[index], images[index].shape[:2], size, methods[index])
            for index, anomaly_map in enumerate(self._frame_maps(grids, owner, maps_per_tile, edges, residuals))
        ]


def _without_edge_band(anomaly_map: torch.Tensor) -> torch.Tensor:
    """A copy of a tiled bank's map with the edge band (EDGE_BAND_FRACTION of each side) set to 0."""
    rows, cols = edge_band_px(*anomaly_map.shape)
    out = anomaly_map.clone()
    if rows and out.shape[0] > 2 * rows:
        out[:rows], out[-rows:] = 0.0, 0.0
    if cols and out.shape[1] > 2 * cols:
        out[:, :cols], out[:, -cols:] = 0.0, 0.0
    return out


def _fit_frame(image: np.ndarray, bank: MemoryBank) -> np.ndarray:
    """A frame for a tiled bank must have the shots' size (same camera); another size is resized to it."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ShapeError(f"expected uint8 RGB of shape (H, W, 3), got {image.dtype} {tuple(image.shape)}")
    if bank.frame_size is not None and image.shape[:2] != bank.frame_size:
        height, width = bank.frame_size
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` at (height, width) ``size`` (a cold-start class keeps its first frame's size)."""
    if image.shape[:2] == size:
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _grid(frame: np.ndarray, bank: MemoryBank) -> TileGrid:
    return TileGrid.for_frame(frame.shape[0], frame.shape[1], bank.tile_px, bank.tile_overlap)


def _frame_score(
    anomaly_map: torch.Tensor, threshold: float, frame_size: tuple[int, int], size_px: int, method: str = ""
) -> FrameScore:
    m = anomaly_map.numpy().astype(np.float32, copy=False)
    score = float(m.max())  # image score = max(M)
    is_anomalous = score > threshold
    mask = (m > threshold).astype(np.uint8) if is_anomalous else np.zeros(m.shape, np.uint8)
    regions = find_regions(mask) if is_anomalous else []
    scale_y, scale_x = frame_size[0] / m.shape[0], frame_size[1] / m.shape[1]
    boxes = tuple(
        RegionBox(
            x=int(round(r.bbox[1] * scale_x)),
            y=int(round(r.bbox[0] * scale_y)),
            width=max(1, int(round(r.bbox[3] * scale_x))),
            height=max(1, int(round(r.bbox[2] * scale_y))),
            area_px=int(round(r.area_px * scale_x * scale_y)),
            position=r.position,
        )
        for r in regions
    )
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
        regions=boxes,
        frame_size=(int(frame_size[0]), int(frame_size[1])),
        threshold_method=method,
    )
