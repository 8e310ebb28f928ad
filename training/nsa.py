"""NSA-style anomaly simulation: realistic synthetic defects from normal images only.

docs/method.md, "Training data": cut a patch from a *different* normal image of the class, resize and
shift it, paste it with Poisson blending (``cv2.seamlessClone``), one patch always and a second with
p = 0.5, per-class patch-size bounds; the mask is binarised at 0.3. Plain cut-paste (visible seams)
and scratch / stain variants are options for comparison and augmentation.

Ground-truth mask, how it is made ("nsa" and "cutpaste"; scratch / stain come from
:mod:`model.defects` with their own masks): ``diff = max over RGB |out - original| / 255``,
smoothed by a 3x3 box filter and restricted to the pasted patch's footprint; it is normalised by
``max(max(diff in footprint), min_contrast)`` into [0, 1]; the mask is ``normalised > mask_threshold``
(0.3), closed with a 3x3 kernel. So the mask covers where the image visibly changed, not the whole
rectangle (Poisson blending fades the patch's edge into the background). A patch that changes
nothing visible (max diff < ``min_contrast``) is drawn again, up to ``max_tries`` times.

>>> import numpy as np
>>> images = [np.full((64, 64, 3), v, np.uint8) for v in (60, 200)]
>>> sim = AnomalySimulator(images, method="cutpaste", seed=0)
>>> image, mask = sim.sample(0)
>>> image.shape, mask.dtype, bool(mask.any())
((64, 64, 3), dtype('uint8'), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from linesight.errors import ConfigError

__all__ = [
    "CLASS_PATCH_BOUNDS",
    "METHODS",
    "AnomalySimulator",
    "PastedPatch",
    "PatchBounds",
    "SimulatedAnomaly",
    "patch_bounds_for",
]

METHODS = ("nsa", "cutpaste", "scratch", "stain")
_CLONE_MODES = {"normal": cv2.NORMAL_CLONE, "mixed": cv2.MIXED_CLONE}


@dataclass(frozen=True)
class PatchBounds:
    """Patch side lengths as fractions of the image side, and the resize range applied before pasting.

    >>> PatchBounds(0.05, 0.2).max_frac
    0.2
    """

    min_frac: float = 0.08  # smallest patch side / image side
    max_frac: float = 0.3  # largest patch side / image side (before resizing)
    resize: tuple[float, float] = (0.7, 1.3)  # patch scale factor drawn uniformly from this range

    def __post_init__(self) -> None:
        if not 0 < self.min_frac <= self.max_frac < 1:
            raise ConfigError(f"patch bounds need 0 < min_frac <= max_frac < 1, got ({self.min_frac}, {self.max_frac})")
        if not 0 < self.resize[0] <= self.resize[1]:
            raise ConfigError(f"patch resize range needs 0 < low <= high, got {self.resize}")


# Small patches for small parts (screws, pills), larger for textures and big objects; classes of
# MVTec-AD, VisA and the built-in synthetic line. Unknown classes get PatchBounds().
_SMALL = PatchBounds(0.04, 0.14)
_MEDIUM = PatchBounds(0.06, 0.25)
_LARGE = PatchBounds(0.08, 0.4)
CLASS_PATCH_BOUNDS: dict[str, PatchBounds] = {
    **dict.fromkeys(("screw", "pill", "capsule", "capsules", "macaroni1", "macaroni2", "fryum", "candle"), _SMALL),
    **dict.fromkeys(("transistor", "metal_nut", "cable", "toothbrush", "zipper", "pcb1", "pcb2", "pcb3", "pcb4",
                     "cashew", "chewinggum", "pipe_fryum", "bolt", "washer", "gear"), _MEDIUM),
    **dict.fromkeys(("carpet", "grid", "leather", "tile", "wood", "bottle", "hazelnut", "fabric", "brick",
                     "gravel", "grass"), _LARGE),
}


def patch_bounds_for(product_class: str | None) -> PatchBounds:
    """The patch bounds of ``product_class`` from :data:`CLASS_PATCH_BOUNDS`, else the defaults.

    >>> patch_bounds_for("screw").max_frac < patch_bounds_for("carpet").max_frac
    True
    """
    return CLASS_PATCH_BOUNDS.get((product_class or "").lower(), PatchBounds())


@dataclass(frozen=True)
class PastedPatch:
    """One pasted patch: which normal image it came from and where (boxes are x, y, w, h in pixels)."""

    donor_index: int | None  # index into the simulator's images; None for scratch / stain
    source_box_px: tuple[int, int, int, int]
    target_box_px: tuple[int, int, int, int]


@dataclass(frozen=True)
class SimulatedAnomaly:
    """A synthetic anomaly: the image (H, W, 3) uint8 RGB, its mask (H, W) uint8 {0, 1}, and provenance."""

    image: np.ndarray
    mask: np.ndarray
    target_index: int
    patches: tuple[PastedPatch, ...] = field(default_factory=tuple)


class AnomalySimulator:
    """Draws synthetic anomalies from a pool of normal images of one class; seeded and deterministic.

    ``method``: "nsa" (Poisson blending, default), "cutpaste" (plain paste), "scratch", "stain".
    ``clone_mode``: "normal" (``cv2.NORMAL_CLONE``) or "mixed" (``cv2.MIXED_CLONE``, keeps the stronger
    gradient: good for textures). Same seed, same images, same call order -> identical samples.

    >>> import numpy as np
    >>> imgs = [np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8) for i in range(3)]
    >>> a = AnomalySimulator(imgs, seed=1).sample(0)[1]
    >>> b = AnomalySimulator(imgs, seed=1).sample(0)[1]
    >>> bool((a == b).all())
    True
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        *,
        product_class: str | None = None,
        method: str = "nsa",
        clone_mode: str = "normal",
        bounds: PatchBounds | None = None,
        second_patch_p: float = 0.5,
        mask_threshold: float = 0.3,
        min_contrast: float = 0.1,
        max_tries: int = 10,
        seed: int = 0,
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"unknown simulation method {method!r}; choose one of {list(METHODS)}")
        if clone_mode not in _CLONE_MODES:
            raise ConfigError(f"unknown clone mode {clone_mode!r}; choose one of {sorted(_CLONE_MODES)}")
        if not 0.0 <= second_patch_p <= 1.0:
            raise ConfigError(f"second_patch_p must be in [0, 1], got {second_patch_p}")
        if not 0.0 < mask_threshold < 1.0:
            raise ConfigError(f"mask_threshold must be in (0, 1), got {mask_threshold}")
        self.images = [_check_image(image, index) for index, image in enumerate(images)]
        needs_donor = method in ("nsa", "cutpaste")
        if len(self.images) < (2 if needs_donor else 1):
            raise ConfigError(
                f"method {method!r} needs at least {2 if needs_donor else 1} normal images "
                f"(patches come from a different image), got {len(self.images)}"
            )
        shapes = {image.shape for image in self.images}
        if len(shapes) != 1:
            raise ConfigError(f"all normal images must have one size, got {sorted(shapes)}")
        self.method = method
        self.clone_flag = _CLONE_MODES[clone_mode]
        self.bounds = bounds or patch_bounds_for(product_class)
        self.second_patch_p = second_patch_p
        self.mask_threshold = mask_threshold
        self.min_contrast = min_contrast
        self.max_tries = max_tries
        self.rng = np.random.default_rng(seed)

    def sample(self, target_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One anomaly on image ``target_index`` (random if None): ``(image uint8 RGB, mask uint8 {0,1})``."""
        result = self.sample_detailed(target_index)
        return result.image, result.mask

    def sample_detailed(self, target_index: int | None = None) -> SimulatedAnomaly:
        """Like :meth:`sample` but also returns which images and boxes the patches came from."""
        if target_index is None:
            target_index = int(self.rng.integers(len(self.images)))
        if not 0 <= target_index < len(self.images):
            raise ConfigError(f"target_index {target_index} out of range for {len(self.images)} images")
        image = self.images[target_index].copy()
        mask = np.zeros(image.shape[:2], np.uint8)
        n_patches = 1 + int(self.rng.random() < self.second_patch_p)  # 1 always, a 2nd with p
        patches: list[PastedPatch] = []
        for _ in range(n_patches):
            for _try in range(self.max_tries):
                out, patch_mask, info = self._one_patch(image, target_index)
                if patch_mask.any():
                    image, mask = out, np.maximum(mask, patch_mask)
                    patches.append(info)
                    break
        if not mask.any():
            raise ConfigError(
                f"could not make a visible anomaly on image {target_index} in {self.max_tries} tries "
                "(are all normal images identical and flat?)"
            )
        return SimulatedAnomaly(image=image, mask=mask, target_index=target_index, patches=tuple(patches))

    # --- one patch ------------------------------------------------------------------------------
    def _one_patch(self, image: np.ndarray, target_index: int) -> tuple[np.ndarray, np.ndarray, PastedPatch]:
        h_px, w_px = image.shape[:2]
        if self.method in ("scratch", "stain"):
            from model import defects  # one implementation of scratches and stains, with their own masks

            out, mark = (defects.scratch if self.method == "scratch" else defects.stain)(image, self.rng)
            ys, xs = np.nonzero(mark)
            box = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1) if ys.size else (0, 0, 0, 0)
            return out, mark.astype(np.uint8), PastedPatch(None, box, box)
        donor_index = self._donor_index(target_index)
        donor = self.images[donor_index]
        pw, ph = (self._side(s) for s in (w_px, h_px))  # patch size in the donor
        sx, sy = int(self.rng.integers(0, w_px - pw + 1)), int(self.rng.integers(0, h_px - ph + 1))
        scale = float(self.rng.uniform(*self.bounds.resize))
        tw = int(np.clip(round(pw * scale), 3, w_px - 2))
        th = int(np.clip(round(ph * scale), 3, h_px - 2))
        patch = cv2.resize(donor[sy : sy + ph, sx : sx + pw], (tw, th), interpolation=cv2.INTER_LINEAR)
        # shift: the target position is independent of the source position; keep 1 px off the border
        tx, ty = int(self.rng.integers(1, w_px - tw)), int(self.rng.integers(1, h_px - th))
        footprint = np.zeros((h_px, w_px), np.uint8)
        footprint[ty : ty + th, tx : tx + tw] = 1
        if self.method == "cutpaste":
            out = image.copy()
            out[ty : ty + th, tx : tx + tw] = patch
        else:
            out = _poisson_paste(image, patch, (tx, ty), self.clone_flag)
        info = PastedPatch(donor_index, (sx, sy, pw, ph), (tx, ty, tw, th))
        return out, self._mask(image, out, footprint), info

    def _donor_index(self, target_index: int) -> int:
        # a *different* normal image: draw from the others
        others = len(self.images) - 1
        index = int(self.rng.integers(others))
        return index + 1 if index >= target_index else index

    def _side(self, side_px: int) -> int:
        frac = float(self.rng.uniform(self.bounds.min_frac, self.bounds.max_frac))
        return int(np.clip(round(frac * side_px), 3, side_px - 2))

    def _mask(self, before: np.ndarray, after: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        return change_mask(before, after, footprint, threshold=self.mask_threshold, min_contrast=self.min_contrast)


def change_mask(
    before: np.ndarray,
    after: np.ndarray,
    footprint: np.ndarray,
    *,
    threshold: float = 0.3,
    min_contrast: float = 0.1,
) -> np.ndarray:
    """Binarised change between two uint8 RGB images inside ``footprint`` (see the module docstring).

    >>> a = np.zeros((8, 8, 3), np.uint8); b = a.copy(); b[2:5, 2:5] = 255
    >>> int(change_mask(a, b, np.ones((8, 8), np.uint8)).sum()) >= 9
    True
    """
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16)).max(axis=2).astype(np.float32) / 255.0
    diff = cv2.blur(diff, (3, 3)) * (footprint > 0)
    peak = float(diff.max())
    if peak < min_contrast:
        return np.zeros(footprint.shape, np.uint8)
    mask = (diff / peak > threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    return mask * (footprint > 0).astype(np.uint8)


def _poisson_paste(image: np.ndarray, patch: np.ndarray, top_left: tuple[int, int], flag: int) -> np.ndarray:
    """Seamless-clone ``patch`` into ``image`` with its top-left corner at ``top_left`` (x, y)."""
    th, tw = patch.shape[:2]
    tx, ty = top_left
    # a full-size source with the patch already in place: the clone region is exactly the patch box
    source = image.copy()
    source[ty : ty + th, tx : tx + tw] = patch
    clone_mask = np.zeros(image.shape[:2], np.uint8)
    clone_mask[ty : ty + th, tx : tx + tw] = 255
    # OpenCV centres the mask's bounding box on `center`; odd sizes round down, so use its formula
    center = (tx + tw // 2, ty + th // 2)
    bgr = cv2.seamlessClone(source[:, :, ::-1].copy(), image[:, :, ::-1].copy(), clone_mask, center, flag)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _check_image(image: np.ndarray, index: int) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ConfigError(f"normal image {index}: expected uint8 RGB (H, W, 3), got {got}")
    return image
