"""A realistic benchmark built offline: real photographs at 1-2 MP with subtle defects of known masks.

The demo's synthetic line is what the detector was tuned on; this benchmark is what a plant's
camera looks like instead. Every class is one real photograph that ships inside an installed
package (scikit-image's data images, scikit-learn's sample photos), scaled to about 1-2 MP, and
every frame is a fresh "exposure" of it: a shift of up to 1.5 % of the side, a rotation of up to
0.5 degree, gain and offset jitter, sensor noise and a JPEG round trip, as a fixed camera over a
conveyor gives. With ``part_variation_px`` > 0 every exposure also bends the part by a smooth random
displacement of that many pixels (standard deviation; features ~60 px across), as flexible or
naturally varying parts (wood, textiles, castings) differ from one to the next: a harder and, for
such lines, more honest benchmark than re-exposures of one photograph, and the case where a pixel
comparison with the references (model/registration.py) must stand aside. Defective frames carry one
(sometimes two) subtle defects drawn at the frame's resolution, with their masks:

- ``crack``: a 1-3 px wide random-walk line, 20-45 % darker than the surface under it;
- ``stain``: a soft irregular blob of 0.1-1 % of the frame, 5-15 % brighter or darker, slightly tinted;
- ``scratch``: a 1-2 px straight or slightly curved line, 10-25 % brighter or darker;
- ``bold``: 1 in 8 defects is a clearly visible one (a larger blob of 30-50 % contrast).

The generators here are deliberately not the ones bank calibration uses (model/defects.py),
so the benchmark does not grade the calibration on its own homework. Written in the ``mvtec``
layout that :func:`training.datasets.load_dataset` reads.

>>> frame, mask, kind = defective_frame(exposure(source_photo("brick", 0.05), np.random.default_rng(0)),
...                                     np.random.default_rng(1))
>>> frame.shape[:2] == mask.shape and 0 < mask.sum() < mask.size and kind in DEFECT_KINDS
True
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from training.exceptions import DatasetError

__all__ = [
    "CLASSES",
    "DEFECT_KINDS",
    "defective_frame",
    "export_realistic_dataset",
    "exposure",
    "jpeg_round_trip",
    "source_photo",
]

log = logging.getLogger(__name__)

# class -> (package, file inside its data folder); all ship inside installed wheels (no download)
_SOURCES: dict[str, tuple[str, str]] = {
    "retina": ("skimage", "retina.jpg"),  # 1411 x 1411, a real fundus photograph
    "hubble": ("skimage", "hubble_deep_field.jpg"),  # 872 x 1000
    "brick": ("skimage", "brick.png"),  # 512 x 512 grey texture photographs
    "gravel": ("skimage", "gravel.png"),
    "grass": ("skimage", "grass.png"),
    "coffee": ("skimage", "coffee.png"),  # 400 x 600 colour photograph
    "motorcycle": ("skimage", "motorcycle_left.png"),  # 500 x 741
    "china": ("sklearn", "china.jpg"),  # 427 x 640
}
CLASSES: tuple[str, ...] = tuple(_SOURCES)
DEFECT_KINDS: tuple[str, ...] = ("crack", "stain", "scratch", "bold")
DEFAULT_MEGAPIXELS = 1.2  # frame size; the sources are 0.2-2 MP, so most are scaled up, as a camera's optics blur
_MAX_SHIFT = 0.015  # of the side
_MAX_ROTATION_DEG = 0.5
_NOISE_SIGMA = 2.0  # grey levels of sensor noise
_JPEG_QUALITY = 92


def _data_file(package: str, name: str) -> Path:
    if package == "skimage":
        import skimage

        folder = Path(skimage.__file__).parent / "data"
    else:
        import sklearn.datasets

        folder = Path(sklearn.datasets.__file__).parent / "images"
    path = folder / name
    if not path.is_file():
        raise DatasetError(f"the packaged photograph {str(path)!r} is missing (is {package} installed?)")
    return path


def source_photo(product_class: str, megapixels: float = DEFAULT_MEGAPIXELS) -> np.ndarray:
    """The class's photograph as uint8 RGB, scaled (Lanczos) to about ``megapixels`` with its aspect ratio."""
    if product_class not in _SOURCES:
        raise DatasetError(f"unknown realistic class {product_class!r}; choose from {list(CLASSES)}")
    if not 0.01 <= megapixels <= 16:
        raise DatasetError(f"megapixels must be in [0.01, 16], got {megapixels}")
    bgr = cv2.imread(str(_data_file(*_SOURCES[product_class])), cv2.IMREAD_COLOR)
    height, width = bgr.shape[:2]
    scale = math.sqrt(megapixels * 1e6 / (height * width))
    size = (max(32, round(width * scale)), max(32, round(height * scale)))
    interpolation = cv2.INTER_LANCZOS4 if scale > 1 else cv2.INTER_AREA
    return np.ascontiguousarray(cv2.resize(bgr, size, interpolation=interpolation)[:, :, ::-1])


def exposure(photo: np.ndarray, rng: np.random.Generator, *, jpeg: bool = True,
             part_variation_px: float = 0.0) -> np.ndarray:
    """One camera frame of ``photo``: small shift/rotation, gain/offset jitter, sensor noise, JPEG (if ``jpeg``);
    the part itself bent by ``part_variation_px`` first (see the module docstring)."""
    if part_variation_px > 0:
        photo = _bent(photo, rng, part_variation_px)
    height, width = photo.shape[:2]
    # zoom in just enough that the shift and rotation never show the border
    zoom = 1.0 + 2 * _MAX_SHIFT + math.radians(_MAX_ROTATION_DEG) * 2
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-1, 1) * _MAX_ROTATION_DEG), zoom)
    matrix[:, 2] += rng.uniform(-1, 1, 2) * _MAX_SHIFT * np.array([width, height])
    frame = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    frame = frame.astype(np.float32) * rng.uniform(0.96, 1.04) + rng.uniform(-3, 3)
    frame += rng.normal(0.0, _NOISE_SIGMA, frame.shape).astype(np.float32)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    return jpeg_round_trip(frame) if jpeg else frame


_BEND_SCALE_PX = 20.0  # Gaussian sigma of the displacement field: bends ~60 px across


def _bent(photo: np.ndarray, rng: np.random.Generator, amplitude_px: float) -> np.ndarray:
    """``photo`` under a smooth random displacement field of standard deviation ``amplitude_px`` per axis."""
    height, width = photo.shape[:2]
    fields = []
    for _ in range(2):
        field = cv2.GaussianBlur(rng.normal(0.0, 1.0, (height, width)).astype(np.float32), (0, 0), _BEND_SCALE_PX)
        fields.append(field * (amplitude_px / (float(field.std()) + 1e-6)))
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(photo, cols + fields[0], rows + fields[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def jpeg_round_trip(frame: np.ndarray) -> np.ndarray:
    """The frame as the camera sends it (JPEG at quality 92)."""
    ok, buffer = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise DatasetError(f"could not JPEG-encode a frame of shape {frame.shape}")
    return np.ascontiguousarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[:, :, ::-1])


def _random_walk(rng: np.random.Generator, start: np.ndarray, length_px: float, step_px: float, wiggle: float):
    angle = rng.uniform(0, 2 * math.pi)
    points = [start.astype(np.float64)]
    for _ in range(max(2, int(length_px / step_px))):
        angle += rng.normal(0, wiggle)
        points.append(points[-1] + step_px * np.array([math.cos(angle), math.sin(angle)]))
    return np.round(np.array(points)).astype(np.int32)


_CONTRAST_FLOOR = 64.0  # grey levels: contrast is relative to max(local level, this), so a defect on black shows


def _apply(frame: np.ndarray, shape: np.ndarray, contrast: float, tint: np.ndarray | None = None) -> np.ndarray:
    """Change the frame by ``contrast`` (a fraction, signed) of its local level under ``shape`` (in [0, 1]).

    The local level is the surface's brightness, floored at ``_CONTRAST_FLOOR``: a 10 % stain on a
    black background is as visible as one on a mid-grey surface, as on a real part.
    """
    image = frame.astype(np.float32)
    level = np.maximum(image.mean(axis=2, keepdims=True), _CONTRAST_FLOOR)
    weight = shape[..., None].astype(np.float32)
    change = contrast * level * weight
    if tint is not None:
        change = change + tint[None, None, :] * level * weight
    return np.clip(image + change, 0, 255).astype(np.uint8)


def _crack(frame, rng, centre, side):
    layer = np.zeros(frame.shape[:2], np.float32)
    points = _random_walk(rng, centre, rng.uniform(0.04, 0.12) * side, 3.0, 0.35)
    cv2.polylines(layer, [points.reshape(-1, 1, 2)], False, 1.0, thickness=int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
    return _apply(frame, layer, -rng.uniform(0.20, 0.45)), layer


def _stain(frame, rng, centre, side, bold=False):
    height, width = frame.shape[:2]
    area = rng.uniform(0.003, 0.012) if bold else rng.uniform(0.001, 0.01)
    radius = math.sqrt(area * height * width / math.pi)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), max(2.0, radius / 3))
    yy, xx = np.mgrid[0:height, 0:width]
    distance = np.hypot(yy - centre[1], xx - centre[0]) / radius
    blob = ((distance + 0.6 * noise / (noise.std() + 1e-6) * 0.3) < 1.0).astype(np.float32)
    layer = cv2.GaussianBlur(blob, (0, 0), max(1.0, radius / 8))
    contrast = rng.uniform(0.30, 0.50) if bold else rng.uniform(0.05, 0.15)
    tint = rng.uniform(-0.04, 0.04, 3).astype(np.float32)
    return _apply(frame, layer, contrast * rng.choice([-1.0, 1.0]), tint), layer


def _scratch(frame, rng, centre, side):
    layer = np.zeros(frame.shape[:2], np.float32)
    points = _random_walk(rng, centre, rng.uniform(0.05, 0.2) * side, 6.0, 0.05)
    cv2.polylines(layer, [points.reshape(-1, 1, 2)], False, 1.0, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    return _apply(frame, layer, rng.uniform(0.10, 0.25) * rng.choice([-1.0, 1.0])), layer


def defective_frame(frame: np.ndarray, rng: np.random.Generator, kind: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """``frame`` with one defect (a second with p = 0.25): (image, mask uint8 {0, 1}, kind of the first)."""
    if kind is not None and kind not in DEFECT_KINDS:
        raise DatasetError(f"unknown defect kind {kind!r}; choose from {list(DEFECT_KINDS)}")
    height, width = frame.shape[:2]
    side = min(height, width)
    first = kind or str(rng.choice(DEFECT_KINDS, p=[0.3, 0.3, 0.275, 0.125]))
    mask = np.zeros((height, width), np.uint8)
    for index in range(2 if rng.random() < 0.25 else 1):
        current = first if index == 0 else str(rng.choice(DEFECT_KINDS[:3]))
        margin = 0.1 * side
        centre = np.array([rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)])
        if current == "crack":
            frame, layer = _crack(frame, rng, centre, side)
        elif current == "stain":
            frame, layer = _stain(frame, rng, centre, side)
        elif current == "scratch":
            frame, layer = _scratch(frame, rng, centre, side)
        else:
            frame, layer = _stain(frame, rng, centre, side, bold=True)
        mask |= (layer > 0.25).astype(np.uint8)
    return frame, mask, first


def export_realistic_dataset(
    root: str | Path,
    classes: tuple[str, ...] = CLASSES,
    *,
    n_train: int = 6,
    n_test_good: int = 10,
    n_test_defective: int = 10,
    megapixels: float = DEFAULT_MEGAPIXELS,
    seed: int = 0,
    part_variation_px: float = 0.0,
) -> Path:
    """Write the benchmark in the mvtec layout under ``root`` (PNG, masks as ``<name>_mask.png``); returns root.

    Deterministic for a given seed; an existing complete export with the same parameters is reused.
    """
    root = Path(root)
    stamp = root / ".realistic"
    if not 0.0 <= part_variation_px <= 50.0:
        raise DatasetError(f"part_variation_px must be in [0, 50] px, got {part_variation_px}")
    signature = f"{list(classes)} {n_train} {n_test_good} {n_test_defective} {megapixels} {seed}"
    if part_variation_px:
        signature += f" bent {part_variation_px}"
    if stamp.is_file() and stamp.read_text() == signature:
        return root
    unknown = [c for c in classes if c not in _SOURCES]
    if unknown:
        raise DatasetError(f"unknown realistic class {unknown[0]!r}; choose from {list(CLASSES)}")
    for name in classes:
        rng = np.random.default_rng([seed, CLASSES.index(name)])
        photo = source_photo(name, megapixels)
        folders = {p: root / name / p for p in ("train/good", "test/good", "test/defect", "ground_truth/defect")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        bend = part_variation_px
        for i in range(n_train):
            _write(folders["train/good"] / f"{i:03d}.png", exposure(photo, rng, part_variation_px=bend))
        for i in range(n_test_good):
            _write(folders["test/good"] / f"{i:03d}.png", exposure(photo, rng, part_variation_px=bend))
        for i in range(n_test_defective):
            image, mask, _ = defective_frame(exposure(photo, rng, jpeg=False, part_variation_px=bend), rng)
            _write(folders["test/defect"] / f"{i:03d}.png", jpeg_round_trip(image))
            cv2.imwrite(str(folders["ground_truth/defect"] / f"{i:03d}_mask.png"), mask * 255)
        log.info("realistic class %r: %dx%d frames written", name, photo.shape[1], photo.shape[0])
    stamp.write_text(signature)
    return root


def _write(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image[:, :, ::-1]):
        raise DatasetError(f"cannot write {str(path)!r}")
