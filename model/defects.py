"""Simple seeded defect injection: scratch, stain, hole and cut-paste, each with its ground-truth mask.

Every function takes a uint8 RGB image (H, W, 3) and a ``numpy.random.Generator`` and returns a
new image and a uint8 mask (H, W) in {0, 1}; the input is never modified. Sizes are given for a
224 px image and scale with the image side. ``where`` (optional bool (H, W)) limits where a
defect's centre may fall, e.g. on the part rather than the background. NSA-style Poisson
blending lives in :mod:`training.nsa`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from model.exceptions import DefectError

__all__ = ["DEFECT_KINDS", "inject_defect", "random_defect", "scratch", "stain", "hole", "cut_paste"]

DEFECT_KINDS: tuple[str, ...] = ("scratch", "stain", "hole", "cut_paste")


def _check(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DefectError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {tuple(image.shape)}")


def _centre(image: np.ndarray, rng: np.random.Generator, margin_px: int, where: np.ndarray | None) -> tuple[int, int]:
    """A random (row, col) at least ``margin_px`` from the border, inside ``where`` when given."""
    height, width = image.shape[:2]
    margin = min(margin_px, height // 3, width // 3)
    allowed = np.zeros((height, width), bool)
    allowed[margin : height - margin, margin : width - margin] = True
    if where is not None and (allowed & where.astype(bool)).any():
        allowed &= where.astype(bool)
    rows, cols = np.nonzero(allowed)
    pick = int(rng.integers(rows.size))
    return int(rows[pick]), int(cols[pick])


def _contrast_colour(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colour clearly brighter or darker than the image under ``mask``."""
    local = image[mask > 0].reshape(-1, 3).mean(axis=0) if mask.any() else image.reshape(-1, 3).mean(axis=0)
    shift = rng.uniform(70, 120) * (1 if local.mean() < 128 else -1)
    return np.clip(local + shift + rng.uniform(-20, 20, 3), 0, 255)


def _distinct_colour(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour at least 110 (Euclidean, 0-255 scale) away from ``reference``."""
    for _ in range(64):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - reference) >= 110:
            return colour
    return 255.0 - reference  # the opposite colour always qualifies for mid-grey-free references


def scratch(image: np.ndarray, rng: np.random.Generator, where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A thin bright or dark curve (quadratic Bezier, 1-3 px thick at 224 px)."""
    _check(image)
    scale = image.shape[0] / 224.0
    row, col = _centre(image, rng, int(25 * scale), where)
    length = rng.uniform(30, 80) * scale
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)])
    start = np.array([row, col]) - direction * length / 2
    end = np.array([row, col]) + direction * length / 2
    bend = np.array([row, col]) + np.array([-direction[1], direction[0]]) * rng.uniform(-0.3, 0.3) * length
    t = np.linspace(0, 1, 64)[:, None]
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end  # (64, 2) as (row, col)
    points = np.round(curve[:, ::-1]).astype(np.int32).reshape(-1, 1, 2)  # OpenCV wants (x, y)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.polylines(mask, [points], False, 1, thickness=max(1, int(round(rng.uniform(1, 3.5) * scale))))
    colour = _contrast_colour(image, cv2.dilate(mask, np.ones((7, 7), np.uint8)), rng)
    out = image.astype(np.float32)
    out[mask > 0] = colour
    return out.astype(np.uint8), mask


def stain(image: np.ndarray, rng: np.random.Generator, where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A soft-edged blob of a different colour (irregular ellipse, 6-18 px radius at 224 px)."""
    _check(image)
    scale = image.shape[0] / 224.0
    row, col = _centre(image, rng, int(20 * scale), where)
    axes = (int(rng.uniform(6, 18) * scale), int(rng.uniform(6, 18) * scale))
    blob = np.zeros(image.shape[:2], np.float32)
    cv2.ellipse(blob, (col, row), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, thickness=-1)
    noise = cv2.GaussianBlur(rng.random(image.shape[:2]).astype(np.float32), (0, 0), 3 * scale)
    blob = cv2.GaussianBlur(blob * (0.7 + 0.6 * noise), (0, 0), 2.0 * scale)  # soft, irregular edge
    alpha = np.clip(blob / max(float(blob.max()), 1e-6), 0, 1) * rng.uniform(0.65, 0.9)
    colour = _distinct_colour(image.reshape(-1, 3).mean(axis=0), rng)
    out = image.astype(np.float32) * (1 - alpha[..., None]) + colour * alpha[..., None]
    mask = (alpha > 0.3 * alpha.max()).astype(np.uint8)
    return np.clip(out, 0, 255).astype(np.uint8), mask


def hole(image: np.ndarray, rng: np.random.Generator, where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A dark ellipse with a shaded rim (hole or dent, 5-13 px radius at 224 px)."""
    _check(image)
    scale = image.shape[0] / 224.0
    row, col = _centre(image, rng, int(16 * scale), where)
    axes = (max(2, int(rng.uniform(5, 13) * scale)), max(2, int(rng.uniform(5, 13) * scale)))
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(mask, (col, row), axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
    depth = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.5 * scale)  # darker towards the middle
    darkness = rng.uniform(0.08, 0.25)
    out = image.astype(np.float32) * (1 - (1 - darkness) * depth[..., None])
    return np.clip(out, 0, 255).astype(np.uint8), mask


def cut_paste(
    image: np.ndarray,
    rng: np.random.Generator,
    source: np.ndarray | None = None,
    where: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste a patch (16-48 px at 224 px) cut from ``source`` (another image; default: this one),
    rotated/flipped and recoloured (per-channel gain 0.6-1.4), at a random place (plain paste, visible seams)."""
    _check(image)
    source = image if source is None else source
    _check(source)
    scale = image.shape[0] / 224.0
    height, width = image.shape[:2]
    patch_h = min(int(rng.uniform(16, 48) * scale), source.shape[0] - 1, height - 2)
    patch_w = min(int(rng.uniform(16, 48) * scale), source.shape[1] - 1, width - 2)
    top = int(rng.integers(0, source.shape[0] - patch_h))
    left = int(rng.integers(0, source.shape[1] - patch_w))
    patch = source[top : top + patch_h, left : left + patch_w].astype(np.float32)
    patch = np.rot90(patch, int(rng.integers(1, 4)))  # a turned piece never matches its surroundings
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    gains = rng.uniform(0.6, 1.4, 3)
    while np.abs(gains - 1).max() < 0.25:  # a visible colour or brightness change
        gains = rng.uniform(0.6, 1.4, 3)
    patch = np.clip(patch * gains, 0, 255)
    ph, pw = patch.shape[:2]
    row, col = _centre(image, rng, max(ph, pw) // 2 + 1, where)
    r0 = int(np.clip(row - ph // 2, 0, height - ph))
    c0 = int(np.clip(col - pw // 2, 0, width - pw))
    out = image.copy()
    out[r0 : r0 + ph, c0 : c0 + pw] = patch.astype(np.uint8)
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[r0 : r0 + ph, c0 : c0 + pw] = 1
    return out, mask


def inject_defect(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    source: np.ndarray | None = None,
    where: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One defect of ``kind`` (one of DEFECT_KINDS) -> (image uint8 RGB, mask uint8 {0, 1}).

    >>> img = np.full((224, 224, 3), 120, np.uint8)
    >>> out, mask = inject_defect(img, "hole", np.random.default_rng(0))
    >>> bool(mask.any()), bool(out[mask > 0].mean() < 120)
    (True, True)
    """
    if kind == "scratch":
        return scratch(image, rng, where)
    if kind == "stain":
        return stain(image, rng, where)
    if kind == "hole":
        return hole(image, rng, where)
    if kind == "cut_paste":
        return cut_paste(image, rng, source, where)
    raise DefectError(f"unknown defect kind {kind!r}; choose one of {list(DEFECT_KINDS)}")


def random_defect(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    sources: Sequence[np.ndarray] = (),
    kinds: Sequence[str] = DEFECT_KINDS,
    where: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """A defect of a random kind -> (image, mask, kind); cut-paste takes its patch from a random source."""
    if not kinds:
        raise DefectError("random_defect needs at least one defect kind, got none")
    kind = str(kinds[int(rng.integers(len(kinds)))])
    source = sources[int(rng.integers(len(sources)))] if (kind == "cut_paste" and len(sources)) else None
    out, mask = inject_defect(image, kind, rng, source=source, where=where)
    return out, mask, kind
