"""Cold start in the stream: a class with no bank is scored against a sliding window of its own recent frames.

A :class:`MutualWindow` holds, for one product class, the patch features of its last ``W - 1``
frames (bounded memory and cost) and the image scores of its last ``score_history`` frames. A new
batch of frames of the class is scored by mutual scoring (:mod:`model.mutual`, MuSc) against the
window and each other: each frame against its ``W - 1`` nearest frames in time, then the batch joins
the window. The decision threshold comes from the window's own scores (:func:`robust_threshold`:
median + 3 scaled MADs; most frames are normal, so a minority of defects moves neither); until
``min_decision_frames`` scores exist there is no decision (threshold 1, the maps' upper bound).

Frames larger than the model input are tiled as the banks tile them (``tile_px``): tile (r, c) of a
frame is compared with tile (r, c) of the other frames (a fixed camera over a line). Pure torch,
no I/O; :meth:`model.detector.Detector.score_cold_start` runs the encoder and builds the results.

>>> window = MutualWindow(MutualConfig(window=4), tile_px=None, min_decision_frames=2)
>>> feats = [[torch.randn(1, 8, 7, 7)] for _ in range(3)]
>>> maps = window.tile_maps(feats, 32)
>>> window.push(feats, [0.2, 0.25, 0.3]); maps.shape, len(window), window.threshold()[1]
(torch.Size([3, 32, 32]), 3, 'cold-start median+3MAD of 3')
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import torch

from model.exceptions import ModelError, ShapeError
from model.mutual import MutualConfig, mutual_scores
from model.tiling import DEFAULT_OVERLAP, TileGrid

__all__ = [
    "MAD_TO_STD",
    "ROBUST_Z",
    "UNDECIDED_THRESHOLD",
    "MutualWindow",
    "robust_threshold",
]

ROBUST_Z = 3.0  # threshold = median + 3 scaled MADs of the window's own scores
MAD_TO_STD = 1.4826  # MAD of a normal distribution times this = its standard deviation
UNDECIDED_THRESHOLD = 1.0  # maps lie in [0, 1]: no frame is flagged before enough scores exist


def robust_threshold(scores: Sequence[float] | np.ndarray, z: float = ROBUST_Z) -> float:
    """median + z * 1.4826 * MAD of ``scores`` (a threshold that a minority of outliers does not move).

    >>> round(robust_threshold([0.1, 0.11, 0.12, 0.1, 0.9]), 4)
    0.1545
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ModelError(f"robust threshold needs finite scores, got {values[:5].tolist()} ({values.size} in all)")
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median))) * MAD_TO_STD
    return median + z * max(mad, 1e-6)


class MutualWindow:
    """The recent frames of one class in cold start: features (``config.window - 1`` frames) and scores."""

    def __init__(
        self,
        config: MutualConfig,
        *,
        tile_px: int | None,
        tile_overlap: float = DEFAULT_OVERLAP,
        score_history: int = 64,
        min_decision_frames: int = 8,
        z: float = ROBUST_Z,
    ) -> None:
        if score_history < 2 or min_decision_frames < 2 or min_decision_frames > score_history:
            raise ModelError(
                f"need 2 <= min_decision_frames <= score_history, got {min_decision_frames} and {score_history}"
            )
        self.config = config
        self.tile_px = tile_px
        self.tile_overlap = tile_overlap
        self.min_decision_frames = min_decision_frames
        self.z = z
        self.frame_size: tuple[int, int] | None = None  # (height, width): the first frame's; later ones resized
        self.grid: TileGrid | None = None
        self._features: deque[list[torch.Tensor]] = deque(maxlen=config.window - 1)  # per frame, per stage (T, C, h, w)
        self._scores: deque[float] = deque(maxlen=score_history)
        self.frames_seen = 0

    def __len__(self) -> int:
        """Frames whose features are held (at most ``config.window - 1``)."""
        return len(self._features)

    @property
    def scores(self) -> tuple[float, ...]:
        """The image scores of the last ``score_history`` frames, oldest first."""
        return tuple(self._scores)

    def fit(self, height: int, width: int) -> TileGrid:
        """The tile grid of this class's frames; the first frame's size fixes it (later frames are resized to it)."""
        if self.grid is None:
            self.frame_size = (int(height), int(width))
            self.grid = TileGrid.for_frame(int(height), int(width), self.tile_px, self.tile_overlap)
        return self.grid

    def tile_maps(self, batch: Sequence[Sequence[torch.Tensor]], image_size_px: int) -> torch.Tensor:
        """Mutual maps of the batch's tiles, (B * T, S, S) frame-major: each frame against the window and the batch.

        ``batch``: per frame, per encoder stage (T, C_i, h_i, w_i) features of its T tiles. Does
        not change the window (:meth:`push` does). A batch with no other frame to compare against
        (the class's very first frame) gets zero maps.
        """
        if not batch:
            return torch.empty(0, image_size_px, image_size_px)
        tiles = batch[0][0].shape[0]
        stages = len(batch[0])
        for index, frame in enumerate(batch):
            if len(frame) != stages or any(f.shape[0] != tiles for f in frame):
                raise ShapeError(f"frame {index} of the batch: expected {stages} stages of {tiles} tiles each, got "
                                 f"{[tuple(f.shape) for f in frame]}")
        frames = [*self._features, *batch]
        if self._features and (len(self._features[0]) != stages or self._features[0][0].shape[0] != tiles):
            raise ShapeError(f"the window holds {self._features[0][0].shape[0]} tiles per frame, the batch {tiles}")
        if len(frames) < 2:
            return torch.zeros(tiles, image_size_px, image_size_px)
        first = len(self._features)
        out = torch.empty(len(batch), tiles, image_size_px, image_size_px)
        for tile in range(tiles):
            stacked = [torch.stack([frame[stage][tile] for frame in frames]) for stage in range(stages)]  # (N, C, h, w)
            result = mutual_scores(stacked, image_size_px, self.config, only=range(first, len(frames)))
            out[:, tile] = result.maps.to(out.dtype).cpu()
        return out.flatten(0, 1)

    def push(self, batch: Sequence[Sequence[torch.Tensor]], scores: Sequence[float]) -> None:
        """Add a scored batch to the window (its oldest frames drop out)."""
        if len(batch) != len(scores):
            raise ShapeError(f"got {len(batch)} frames but {len(scores)} scores")
        for frame, score in zip(batch, scores, strict=True):
            self._features.append([f.detach() for f in frame])
            self._scores.append(float(score))
        self.frames_seen += len(batch)

    def threshold(self) -> tuple[float, str]:
        """(threshold, how it was set) from the window's scores; undecided (1.0) during the warm-up."""
        count = len(self._scores)
        if count < self.min_decision_frames:
            return UNDECIDED_THRESHOLD, f"cold-start warm-up {count}/{self.min_decision_frames}"
        return robust_threshold(self._scores, self.z), f"cold-start median+{self.z:g}MAD of {count}"
