"""Registered reference residual: a fixed camera's frame against its aligned normal shots, pixel by pixel.

A tiled bank assumes a fixed camera over parts in a fixture (tiles are matched by position,
model/matching.py). There the strongest evidence of a small, faint defect is at the camera's own
resolution: register the frame to the normal shots (a shift and a small rotation), fit their
brightness to it, and look at what is left. Per reference j (aligned to shot 0 when the bank was
built), with G a Gaussian of ``RESIDUAL_SIGMA_PX``:

    R_j = | G * frame - (a_j * G * warp(ref_j) + b_j) |   (grey levels; a_j, b_j: least squares)
    R   = min_j R_j                                        (a pixel is normal if any reference explains it)

Registration: translation by phase correlation, then a Euclidean ECC refinement, both at
``REGISTRATION_SCALE`` of the frame (1.2 MP: ~10 ms). A frame that does not register (ECC does
not converge, or correlates below ``MIN_CORRELATION``: another camera, another part) gets no
residual; the caller scores it by features alone.

Measured on the realistic benchmark (`linesight eval --realistic` frames, 8 classes, 4 shots, 10 good
+ 10 defective test frames each, image score = max R inside the 4 % edge band, 2026-12-08): image
AUROC 99.4 mean (hubble 95, the seven others 100) at 53-74 ms per 1.2 MP frame on one core; an
earlier version that stored the shots aligned with reflected borders: 97.3; sigma 1.5 / 3 px: 95.8 /
97.8 and registration at half scale: no better, slower (both measured on that earlier version). The
EfficientNet features give 79.1 on the same frames (README). Those frames are
re-exposures of one photograph; parts that vary by nature (wood, textiles) leave a residual
everywhere, which is why :mod:`model.fewshot` keeps the channel only where it separates its own
calibration defects from the shots (README "Detection on real photographs (2026-12-08)").

Pure numpy/OpenCV, no I/O.

>>> rng = np.random.default_rng(0)
>>> scene = (cv2.GaussianBlur(rng.uniform(0, 255, (240, 320)), (0, 0), 3) * 3 - 250).clip(0, 255)
>>> shot = np.repeat(scene[:, :, None], 3, axis=2).astype(np.uint8)
>>> moved = np.ascontiguousarray(np.roll(shot, (3, -4), axis=(0, 1)))
>>> references = ReferenceSet.from_shots([shot])
>>> clean = float(references.residual(moved)[20:-20, 20:-20].max())
>>> moved[100:102, 60:160] //= 2  # a dark scratch, 2 px wide
>>> float(references.residual(moved)[90:112, 60:160].max()) > 3 * clean
True
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from model.exceptions import ShapeError

__all__ = ["MIN_CORRELATION", "REGISTRATION_SCALE", "RESIDUAL_SIGMA_PX", "ReferenceSet", "estimate_warp", "to_gray"]

REGISTRATION_SCALE = 0.25  # registration runs on frames shrunk to this fraction of their side
RESIDUAL_SIGMA_PX = 2.0  # Gaussian on frame and references before the difference (sensor noise, JPEG)
# below this ECC correlation a frame is not the references' view of the part (realistic benchmark: 0.981-1.0;
# a 40 px white block on 1.4 % of a 480 px test scene: 0.79; unrelated textures: near 0)
MIN_CORRELATION = 0.7
_ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
_FIT_STEP = 11  # the brightness fit reads every 11th pixel


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 luminance of a uint8 RGB frame.

    >>> float(to_gray(np.full((2, 2, 3), 255, np.uint8))[0, 0])
    255.0
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ShapeError(f"expected uint8 RGB of shape (H, W, 3), got {image.dtype} {tuple(image.shape)}")
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _small(gray: np.ndarray) -> np.ndarray:
    return cv2.resize(gray, None, fx=REGISTRATION_SCALE, fy=REGISTRATION_SCALE, interpolation=cv2.INTER_AREA)


def estimate_warp(reference_small: np.ndarray, frame_small: np.ndarray) -> np.ndarray | None:
    """2x3 Euclidean warp W (frame pixel -> reference pixel, at full scale), or None if ECC does not converge or
    the registered frames correlate less than ``MIN_CORRELATION`` (another part, another view).

    Both inputs are float32 grey at ``REGISTRATION_SCALE`` of the same frame size.
    """
    if reference_small.shape != frame_small.shape:
        raise ShapeError(f"reference {reference_small.shape} and frame {frame_small.shape} differ in size")
    window = cv2.createHanningWindow(frame_small.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(reference_small, frame_small, window)
    warp = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)  # frame(x) = reference(x - d): W x = x - d
    try:
        correlation, warp = cv2.findTransformECC(frame_small, reference_small, warp, cv2.MOTION_EUCLIDEAN,
                                                 _ECC_CRITERIA, None, 5)
    except cv2.error:
        return None
    if correlation < MIN_CORRELATION:
        return None
    warp[:, 2] /= REGISTRATION_SCALE
    return warp


class ReferenceSet:
    """Normal shots of one fixed camera, registered to the first, ready to explain a frame pixel by pixel.

    ``shots`` is (k, H, W) uint8 grey as taken; ``warps`` (k, 2, 3) float32 maps a pixel of shot 0 to the
    same point in shot j (identity for shot 0). Both are what a bank file stores. A frame is registered to
    shot 0 once; each shot is then warped onto it through its own warp, and frame pixels that a shot does
    not cover (the part moved by more than the frame's edge) are not explained by that shot. Pixels no
    shot covers have residual 0: like the detector's edge band, they are not judged.
    """

    def __init__(self, shots: np.ndarray, warps: np.ndarray) -> None:
        if shots.ndim != 3 or shots.shape[0] < 1 or shots.dtype != np.uint8:
            raise ShapeError(f"references must be (k, H, W) uint8 with k >= 1, got {shots.dtype} {tuple(shots.shape)}")
        if warps.shape != (shots.shape[0], 2, 3) or not np.isfinite(warps).all():
            raise ShapeError(f"reference warps must be ({shots.shape[0]}, 2, 3) finite numbers, got {tuple(warps.shape)}")
        self.shots, self.warps = shots, warps.astype(np.float32)
        self._blurred = [cv2.GaussianBlur(r.astype(np.float32), (0, 0), RESIDUAL_SIGMA_PX) for r in shots]
        margin = int(np.ceil(3 * RESIDUAL_SIGMA_PX))  # the blur reads this far: the shot's own border is not content
        self._inside = np.zeros(shots.shape[1:], np.uint8)
        self._inside[margin:-margin, margin:-margin] = 1
        self._small = _small(shots[0].astype(np.float32))

    @classmethod
    def from_shots(cls, shots: Sequence[np.ndarray]) -> ReferenceSet:
        """References from uint8 RGB shots of one size; a shot that does not register to the first is a ShapeError."""
        if not shots:
            raise ShapeError("need at least one shot to build references")
        first = np.clip(np.rint(to_gray(shots[0])), 0, 255).astype(np.uint8)
        references = cls(first[None], np.eye(2, 3, dtype=np.float32)[None])
        return references.extended(shots[1:], [f"shot {index}" for index in range(1, len(shots))])

    def extended(self, frames: Sequence[np.ndarray], names: Sequence[str] | None = None) -> ReferenceSet:
        """These references and ``frames`` (uint8 RGB, this size), each registered to shot 0; a frame that does
        not fit or register is a ShapeError naming it (``names``, default "frame 0", "frame 1", ...)."""
        height, width = self.frame_size
        shots, warps = [self.shots], [self.warps]
        for index, frame in enumerate(frames):
            name = names[index] if names is not None else f"frame {index}"
            gray = to_gray(frame)
            if gray.shape != (height, width):
                raise ShapeError(f"{name} is {gray.shape[1]}x{gray.shape[0]} px, the references {width}x{height}")
            warp = estimate_warp(_small(gray), self._small)  # shot-0 pixel -> this frame's pixel
            if warp is None:
                raise ShapeError(f"{name} does not register to the first shot (not the same view of the same part)")
            shots.append(np.clip(np.rint(gray), 0, 255).astype(np.uint8)[None])
            warps.append(warp[None])
        return ReferenceSet(np.concatenate(shots), np.concatenate(warps))

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames these references explain."""
        return int(self.shots.shape[1]), int(self.shots.shape[2])

    def residual(self, frame: np.ndarray) -> np.ndarray | None:
        """R (H, W) float32 in grey levels for a uint8 RGB frame of the references' size; None if it does not register."""
        gray = to_gray(frame)
        if gray.shape != self.frame_size:
            raise ShapeError(f"frame is {gray.shape[1]}x{gray.shape[0]} px, the references {self.frame_size[1]}x{self.frame_size[0]}")
        to_first = estimate_warp(self._small, _small(gray))  # frame pixel -> shot-0 pixel
        if to_first is None:
            return None
        height, width = gray.shape
        target = cv2.GaussianBlur(gray, (0, 0), RESIDUAL_SIGMA_PX)
        best = np.full((height, width), np.inf, np.float32)
        for blurred, warp in zip(self._blurred, self.warps, strict=True):
            to_shot = _compose(warp, to_first)  # frame pixel -> this shot's pixel
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            warped = cv2.warpAffine(blurred, to_shot, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
            covered = cv2.warpAffine(self._inside, to_shot, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
            fit = covered[::_FIT_STEP, ::_FIT_STEP]
            gain, offset = _brightness_fit(warped[::_FIT_STEP, ::_FIT_STEP][fit], target[::_FIT_STEP, ::_FIT_STEP][fit])
            difference = np.abs(target - (gain * warped + offset))
            difference[~covered] = np.inf  # this shot cannot explain what it did not see
            np.minimum(best, difference, out=best)
        best[np.isinf(best)] = 0.0  # no shot saw it: not judged
        return best


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine map ``outer`` after ``inner``."""
    full = np.vstack([outer, [0.0, 0.0, 1.0]]) @ np.vstack([inner, [0.0, 0.0, 1.0]])
    return full[:2].astype(np.float32)


def _brightness_fit(source: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares (gain, offset) with target ~ gain * source + offset (gain 1 on a flat source)."""
    if source.size == 0:
        return 1.0, 0.0
    variance = float(source.var())
    if variance < 1e-6:
        return 1.0, float(target.mean() - source.mean())
    gain = float(((source - source.mean()) * (target - target.mean())).mean() / variance)
    return gain, float(target.mean() - gain * source.mean())
