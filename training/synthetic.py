"""The built-in synthetic production line: textures and drawn parts, normal or with defects.

Classes: three textures from images shipped inside scikit-image (``brick``, ``gravel``,
``grass``; random crops with small rotation, scale and brightness jitter) and two parts drawn
with OpenCV (``washer``, a metal ring; ``bracket``, a painted L-plate with two holes; small pose
and lighting jitter). Defective frames get one defect from :mod:`model.defects` (on the part
for parts) and carry its ground-truth mask. Everything is deterministic by seed.

>>> frame = SyntheticLine(seed=1).next_frame("washer")
>>> frame.image.shape, frame.product_class
((224, 224, 3), 'washer')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from model.defects import random_defect
from training.exceptions import UnknownProductClassError

__all__ = [
    "PRODUCT_CLASSES",
    "synthetic_frames",
    "SyntheticFrame",
    "SyntheticLine",
    "normal_images",
    "render_normal",
    "rotations_ok",
]

PRODUCT_CLASSES: tuple[str, ...] = ("brick", "gravel", "grass", "washer", "bracket")
_TEXTURE_TINTS = {  # RGB gain applied to the grey scikit-image texture
    "brick": (1.15, 0.78, 0.62),
    "gravel": (1.0, 0.96, 0.9),
    "grass": (0.72, 1.08, 0.6),
}
_ROTATION_INVARIANT = {"brick": True, "gravel": True, "grass": True, "washer": True, "bracket": False}


@dataclass(frozen=True)
class SyntheticFrame:
    """One frame of the synthetic line."""

    image: np.ndarray  # (S, S, 3) uint8 RGB
    product_class: str
    is_defective: bool
    mask: np.ndarray  # (S, S) uint8 in {0, 1}; all zero for normal frames
    defect_kind: str | None  # one of model.defects.DEFECT_KINDS, None for normal frames


def _check_class(product_class: str) -> None:
    if product_class not in PRODUCT_CLASSES:
        raise UnknownProductClassError(
            f"unknown product class {product_class!r}; the synthetic line has {list(PRODUCT_CLASSES)}"
        )


def rotations_ok(product_class: str) -> bool:
    """Whether 90-degree rotations of a normal image are still normal for this class (bank augmentation).

    >>> rotations_ok("gravel"), rotations_ok("bracket")
    (True, False)
    """
    _check_class(product_class)
    return _ROTATION_INVARIANT[product_class]


@lru_cache(maxsize=8)
def _texture(name: str) -> np.ndarray:
    """The tinted RGB float32 texture (512, 512, 3) from scikit-image's bundled data."""
    import skimage.data

    grey = getattr(skimage.data, name)().astype(np.float32)
    return np.clip(grey[..., None] * np.array(_TEXTURE_TINTS[name], np.float32), 0, 255)


def _render_texture(name: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A crop of a texture: random centre, rotation +-4 deg, scale +-5 %, brightness +-8 %."""
    source = _texture(name)
    crop = 288.0 * rng.uniform(0.95, 1.05)  # source pixels covered by the output side
    half = crop * 0.75  # room for the rotated corners
    cy, cx = rng.uniform(half, source.shape[0] - half), rng.uniform(half, source.shape[1] - half)
    matrix = cv2.getRotationMatrix2D((cx, cy), float(rng.uniform(-4, 4)), size / crop)
    matrix[:, 2] += (size / 2 - cx, size / 2 - cy)
    image = cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    image = image * rng.uniform(0.92, 1.08) + rng.normal(0, 2.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), np.ones((size, size), bool)


def _background(size: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """A matte conveyor surface: a level with a gentle gradient and fine noise, float32 (S, S, 3)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5)) * rng.uniform(10, 20)
    base = level * rng.uniform(0.94, 1.06) + gradient
    grain = cv2.GaussianBlur(rng.normal(0, 6, (size, size)).astype(np.float32), (0, 0), 0.8)
    return np.repeat((base + grain)[..., None], 3, axis=2) * np.array([1.0, 1.0, 1.04], np.float32)


def _render_washer(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A brushed-metal ring on a dark belt; centre +-4 %, radii +-3 %, light direction random."""
    image = _background(size, rng, 55.0)
    cy, cx = (0.5 + rng.uniform(-0.04, 0.04, 2)) * size
    outer = 0.33 * size * rng.uniform(0.97, 1.03)
    inner = 0.14 * size * rng.uniform(0.97, 1.03)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = np.hypot(ys - cy, xs - cx)
    # anti-aliased ring coverage
    coverage = np.clip(outer - radius + 0.5, 0, 1) * np.clip(radius - inner + 0.5, 0, 1)
    light = rng.uniform(0, 2 * np.pi)
    theta = np.arctan2(ys - cy, xs - cx)
    bevel = np.cos(np.pi * (radius - inner) / max(outer - inner, 1.0))  # raised middle of the ring
    shade = 165 + 30 * np.cos(theta - light) * bevel + 15 * np.sin(3 * theta) * 0.3
    metal = shade[..., None] * np.array([1.0, 1.0, 1.03], np.float32) * rng.uniform(0.93, 1.07)
    image = image * (1 - coverage[..., None]) + metal * coverage[..., None]
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), coverage > 0.5


def _render_bracket(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A blue-grey painted L-plate with two holes; rotation +-4 deg, shift +-4 %, lighting jitter."""
    image = _background(size, rng, 190.0)
    unit = size / 224.0
    outline = np.array([[40, 40], [110, 40], [110, 130], [184, 130], [184, 184], [40, 184]], np.float32) * unit
    holes = np.array([[75, 80], [150, 157]], np.float32) * unit
    centre = np.array([size / 2, size / 2], np.float32)
    angle = np.deg2rad(rng.uniform(-4, 4))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    shift = rng.uniform(-0.04, 0.04, 2).astype(np.float32) * size

    def place(points: np.ndarray) -> np.ndarray:
        return (points - centre) @ rotation.T + centre + shift

    supersample = 4  # draw at 4x and shrink: anti-aliased edges
    plate = np.zeros((size * supersample, size * supersample), np.uint8)
    cv2.fillPoly(plate, [np.round(place(outline) * supersample).astype(np.int32)], 255)
    for hx, hy in place(holes):
        cv2.circle(plate, (int(hx * supersample), int(hy * supersample)), int(11 * unit * supersample), 0, -1)
    coverage = cv2.resize(plate, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    shadow = cv2.GaussianBlur(np.roll(coverage, (3, 3), axis=(0, 1)), (0, 0), 2.5)
    image *= (1 - 0.35 * shadow)[..., None]
    paint = np.array([88, 108, 138], np.float32) * rng.uniform(0.92, 1.08)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    light = 1 + 0.08 * (xs - ys) * rng.uniform(0.5, 1.5)
    image = image * (1 - coverage[..., None]) + (paint * light[..., None]) * coverage[..., None]
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), coverage > 0.5


_RENDERERS: dict[str, Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "washer": _render_washer,
    "bracket": _render_bracket,
}


def render_normal(product_class: str, image_size_px: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One normal frame and its foreground (bool (S, S): where the part is; all True for textures)."""
    _check_class(product_class)
    if product_class in _TEXTURE_TINTS:
        return _render_texture(product_class, image_size_px, rng)
    return _RENDERERS[product_class](image_size_px, rng)


def normal_images(product_class: str, count: int, image_size_px: int = 224, seed: int = 0) -> list[np.ndarray]:
    """``count`` normal uint8 RGB images of a class (the few-shot references); deterministic by seed.

    Drawn from a random stream separate from :class:`SyntheticLine` with the same seed.

    >>> len(normal_images("brick", 2)), normal_images("brick", 1)[0].dtype
    (2, dtype('uint8'))
    """
    _check_class(product_class)
    rng = np.random.default_rng([seed, 7919, PRODUCT_CLASSES.index(product_class)])
    return [render_normal(product_class, image_size_px, rng)[0] for _ in range(count)]


class SyntheticLine:
    """An endless, seeded stream of frames; a fraction ``defect_rate`` carries one defect.

    >>> line = SyntheticLine(product_classes=("gravel",), defect_rate=1.0, seed=3)
    >>> frame = line.next_frame()
    >>> frame.is_defective, int(frame.mask.max())
    (True, 1)
    """

    def __init__(
        self,
        product_classes: Sequence[str] = PRODUCT_CLASSES,
        defect_rate: float = 0.2,
        image_size_px: int = 224,
        seed: int = 0,
    ) -> None:
        if not product_classes:
            raise UnknownProductClassError("SyntheticLine needs at least one product class, got none")
        for product_class in product_classes:
            _check_class(product_class)
        if not 0.0 <= defect_rate <= 1.0:
            raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
        self.product_classes = tuple(product_classes)
        self.defect_rate = defect_rate
        self.image_size_px = image_size_px
        self._rng = np.random.default_rng([seed, 104729])

    def next_frame(self, product_class: str | None = None) -> SyntheticFrame:
        """The next frame, of ``product_class`` or of a random class of the line."""
        rng = self._rng
        if product_class is None:
            product_class = self.product_classes[int(rng.integers(len(self.product_classes)))]
        _check_class(product_class)
        image, foreground = render_normal(product_class, self.image_size_px, rng)
        size = self.image_size_px
        if rng.random() >= self.defect_rate:
            return SyntheticFrame(image, product_class, False, np.zeros((size, size), np.uint8), None)
        # cut-paste takes its patch from a frame of another class: foreign material on the product
        others = [c for c in PRODUCT_CLASSES if c != product_class]
        source, _ = render_normal(others[int(rng.integers(len(others)))], size, rng)
        defective, mask, kind = random_defect(image, rng, sources=[source], where=foreground)
        return SyntheticFrame(defective, product_class, True, mask, kind)


def synthetic_frames(
    line_id: str,
    camera_id: str,
    *,
    product_classes: Sequence[str] | None = None,
    defect_rate: float = 0.2,
    image_size_px: int = 224,
    seed: int = 0,
) -> Iterator[tuple[str, str, str, np.ndarray, dict]]:
    """An endless line of the built-in synthetic products as camera frames (``connectors.camera``'s
    ``(line_id, camera_id, product_class, image, extra)``), with ground truth in ``extra``."""
    line = SyntheticLine(
        product_classes=tuple(product_classes or PRODUCT_CLASSES),
        defect_rate=defect_rate,
        image_size_px=image_size_px,
        seed=seed,
    )
    while True:
        frame = line.next_frame()
        extra = {"is_defective": frame.is_defective, "defect_kind": frame.defect_kind}
        yield line_id, camera_id, frame.product_class, frame.image, extra
