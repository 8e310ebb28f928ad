"""Evaluation datasets on disk: MVTec-AD, VisA and a generic folder layout; images load lazily.

Layouts (``<class>`` is one product class):

- ``mvtec``: ``<class>/train/good/*.png``, ``<class>/test/<defect or good>/*.png``,
  ``<class>/ground_truth/<defect>/<name>_mask.png`` (required for every defect folder).
- ``visa``: ``split_csv/1cls.csv`` with columns ``object,split,label,image,mask`` (paths relative
  to the root; ``label`` is ``normal`` or ``anomaly``; ``split`` is ``train`` or ``test``).
- ``folder``: ``<class>/train/good``, ``<class>/test/<good or defect>``, optional
  ``<class>/ground_truth/<defect>/<name>_mask.<ext>`` or ``<name>.<ext>``; png/jpg/jpeg/bmp/tif.
  A class without ``ground_truth`` gets image-level metrics only (``has_masks`` is False).

A wrongly laid-out dataset raises :class:`training.exceptions.DatasetError` naming the missing
folder or file. :func:`export_synthetic_dataset` writes the built-in synthetic line in this layout.

>>> import tempfile
>>> root = export_synthetic_dataset(tempfile.mkdtemp(), ["washer"], n_train=2, n_test=2, seed=0)
>>> data = load_dataset(root)
>>> data.layout, list(data.classes), data.classes["washer"].has_masks
('mvtec', ['washer'], True)
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from connectors.image_header import IMAGE_SUFFIXES
from training.exceptions import DatasetError

__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "AnomalyDataset",
    "ClassData",
    "Sample",
    "detect_layout",
    "is_dataset_image",
    "export_synthetic_dataset",
    "load_dataset",
]

log = logging.getLogger(__name__)
LAYOUTS = ("mvtec", "visa", "folder")
_OVERLAY_TAGS = (".overlay", "_overlay", "-overlay", ".heatmap", "_heatmap")  # outputs of inspection tools
VISA_CSV = Path("split_csv") / "1cls.csv"
_VISA_COLUMNS = ("object", "split", "label", "image", "mask")


@dataclass(frozen=True)
class Sample:
    """One image on disk; nothing is read until :meth:`load_image` / :meth:`load_mask`."""

    path: Path
    product_class: str
    label: int  # 1 = defective, 0 = good
    defect_type: str  # "good" for normal images
    mask_path: Path | None = None  # None for good images and classes without masks

    def load_image(self, size_px: int | None = None) -> np.ndarray:
        """The image as uint8 RGB (H, W, 3), resized (area) to ``size_px`` square if given."""
        bgr = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read image {str(self.path)!r} (missing, not an image, or corrupt)")
        if size_px is not None and bgr.shape[:2] != (size_px, size_px):
            bgr = cv2.resize(bgr, (size_px, size_px), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(bgr[:, :, ::-1])

    def load_mask(self, size_px: int | None = None) -> np.ndarray:
        """The ground truth as uint8 {0, 1} (H, W), resized (nearest) if ``size_px``; zeros for good images.

        Without a mask file a defective image raises (call only when the class ``has_masks``).
        """
        if self.mask_path is None:
            if self.label:
                raise DatasetError(f"defective image {str(self.path)!r} has no mask file")
            if size_px is not None:
                return np.zeros((size_px, size_px), np.uint8)
            height, width = self.load_image().shape[:2]
            return np.zeros((height, width), np.uint8)
        mask = cv2.imread(str(self.mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise DatasetError(f"cannot read mask {str(self.mask_path)!r}")
        if size_px is not None and mask.shape != (size_px, size_px):
            mask = cv2.resize(mask, (size_px, size_px), interpolation=cv2.INTER_NEAREST)
        return (mask > 0).astype(np.uint8)


@dataclass(frozen=True)
class ClassData:
    """The train (normal) and test images of one product class."""

    name: str
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]
    has_masks: bool  # False -> image-level metrics only


@dataclass(frozen=True)
class AnomalyDataset:
    """A loaded dataset index: its root, layout and classes by name."""

    root: Path
    layout: str
    classes: dict[str, ClassData]
    skipped: tuple[Path, ...] = ()  # files in the image folders that are not dataset images (overlays, notes)


def detect_layout(root: str | Path) -> str:
    """"visa" if ``split_csv/1cls.csv`` exists, "mvtec" if every class has ``ground_truth``, else "folder"."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {str(root)!r} does not exist")
    if (root / VISA_CSV).is_file():
        return "visa"
    class_dirs = _class_dirs(root)
    if class_dirs and all((d / "ground_truth").is_dir() for d in class_dirs):
        return "mvtec"
    return "folder"


def load_dataset(root: str | Path, layout: str = "auto", classes: Sequence[str] | None = None) -> AnomalyDataset:
    """Index the dataset at ``root`` (no image is read); ``classes`` keeps only those, in that order.

    Raises :class:`DatasetError` naming a missing folder / file, an unknown class or an empty split.
    """
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown dataset layout {layout!r}; choose one of {['auto', *LAYOUTS]}")
    if not root.is_dir():
        raise DatasetError(f"dataset folder {str(root)!r} does not exist")
    skipped: list[Path] = []
    found = _load_visa(root) if layout == "visa" else _load_folders(root, strict_masks=layout == "mvtec", skipped=skipped)
    if not found:
        raise DatasetError(f"no product class found under {str(root)!r} (expected <class>/train/good for layout {layout!r})")
    if classes:
        unknown = [name for name in classes if name not in found]
        if unknown:
            raise DatasetError(f"class {unknown[0]!r} not in dataset {str(root)!r}; found {sorted(found)}")
        found = {name: found[name] for name in classes}
    for data in found.values():
        if not data.train:
            raise DatasetError(f"class {data.name!r} has no normal training image")
        if not data.test:
            raise DatasetError(f"class {data.name!r} has no test image")
    if skipped:
        log.warning("skipped %d file(s) under %s that are not dataset images (overlays, non-images), e.g. %s",
                    len(skipped), root, skipped[0])
    return AnomalyDataset(root=root, layout=layout, classes=found, skipped=tuple(skipped))


# --- folder / MVTec ------------------------------------------------------------------------------
def _class_dirs(root: Path) -> list[Path]:
    if (root / "train").is_dir() and (root / "test").is_dir():
        return [root]  # the root is itself one class
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "train").is_dir())


def is_dataset_image(path: Path) -> bool:
    """An image file of the dataset: an image suffix, not hidden, not an overlay a tool wrote beside it.

    >>> [is_dataset_image(Path(n)) for n in ("000.png", "000.overlay.png", "000_overlay.png", "notes.txt")]
    [True, False, False, False]
    """
    stem = path.stem.lower()
    return (
        path.suffix.lower() in IMAGE_SUFFIXES
        and not path.name.startswith(".")
        and not any(stem.endswith(tag) for tag in _OVERLAY_TAGS)
    )


def _images(folder: Path, skipped: list[Path] | None = None) -> list[Path]:
    """Dataset images of ``folder`` sorted by name; other files are appended to ``skipped``."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if skipped is not None:
        skipped.extend(p for p in files if not is_dataset_image(p))
    return [p for p in files if is_dataset_image(p)]


def _require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise DatasetError(f"missing folder {str(path)!r}")
    return path


def _load_folders(root: Path, *, strict_masks: bool, skipped: list[Path]) -> dict[str, ClassData]:
    result: dict[str, ClassData] = {}
    for class_dir in _class_dirs(root):
        name = class_dir.name
        train = tuple(Sample(p, name, 0, "good") for p in _images(_require_dir(class_dir / "train" / "good"), skipped))
        test_dir = _require_dir(class_dir / "test")
        gt_dir = class_dir / "ground_truth"
        has_masks = gt_dir.is_dir()
        if strict_masks and not has_masks:
            raise DatasetError(f"missing folder {str(gt_dir)!r} (the mvtec layout needs masks; use --layout folder)")
        if not has_masks:
            log.warning("class %r has no ground_truth folder: image-level metrics only", name)
        test: list[Sample] = []
        for defect_dir in sorted(d for d in test_dir.iterdir() if d.is_dir()):
            defect = defect_dir.name
            for path in _images(defect_dir, skipped):
                if defect == "good":
                    test.append(Sample(path, name, 0, "good"))
                    continue
                mask_path = _find_mask(gt_dir / defect, path) if has_masks else None
                test.append(Sample(path, name, 1, defect, mask_path))
        result[name] = ClassData(name, train, tuple(test), has_masks)
    return result


def _find_mask(defect_gt_dir: Path, image_path: Path) -> Path:
    _require_dir(defect_gt_dir)
    for stem in (f"{image_path.stem}_mask", image_path.stem):
        for suffix in IMAGE_SUFFIXES:
            candidate = defect_gt_dir / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    raise DatasetError(f"missing mask file {str(defect_gt_dir / (image_path.stem + '_mask.png'))!r} for {str(image_path)!r}")


# --- VisA -----------------------------------------------------------------------------------------
def _load_visa(root: Path) -> dict[str, ClassData]:
    csv_path = root / VISA_CSV
    if not csv_path.is_file():
        raise DatasetError(f"missing file {str(csv_path)!r} (the visa layout needs its split CSV)")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _VISA_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{str(csv_path)!r} lacks column(s) {missing}; expected {list(_VISA_COLUMNS)}")
        rows = list(reader)
    train: dict[str, list[Sample]] = {}
    test: dict[str, list[Sample]] = {}
    for line, row in enumerate(rows, start=2):
        name, split, label = row["object"].strip(), row["split"].strip().lower(), row["label"].strip().lower()
        if split not in ("train", "test") or label not in ("normal", "anomaly"):
            raise DatasetError(f"{str(csv_path)!r} line {line}: split {split!r} / label {label!r} not understood")
        image = root / row["image"].strip()
        if not image.is_file():
            raise DatasetError(f"missing image file {str(image)!r} ({str(csv_path)!r} line {line})")
        is_anomaly = label == "anomaly"
        mask = None
        if is_anomaly and split == "test":
            if not (row["mask"] or "").strip():
                raise DatasetError(f"{str(csv_path)!r} line {line}: anomaly image {str(image)!r} has no mask")
            mask = root / row["mask"].strip()
            if not mask.is_file():
                raise DatasetError(f"missing mask file {str(mask)!r} ({str(csv_path)!r} line {line})")
        if split == "train":
            if not is_anomaly:  # few-shot references are normal images only
                train.setdefault(name, []).append(Sample(image, name, 0, "good"))
        else:
            test.setdefault(name, []).append(Sample(image, name, int(is_anomaly), "anomaly" if is_anomaly else "good", mask))
    names = sorted(set(train) | set(test))
    return {n: ClassData(n, tuple(train.get(n, ())), tuple(test.get(n, ())), True) for n in names}


# --- synthetic export -----------------------------------------------------------------------------
def export_synthetic_dataset(
    out_dir: str | Path,
    classes: Sequence[str] | None = None,
    n_train: int = 8,
    n_test: int = 16,
    seed: int = 0,
    image_size_px: int = 224,
) -> Path:
    """Write the built-in synthetic line (training/synthetic.py) as an MVTec/folder-layout dataset.

    Per class: ``n_train`` normal images in ``train/good``; ``n_test`` test images, half good and
    half defective (``test/<defect kind>``, masks in ``ground_truth/<defect kind>/<name>_mask.png``).
    Returns ``out_dir``. Deterministic for a seed.
    """
    from training.synthetic import PRODUCT_CLASSES, SyntheticLine, normal_images

    if n_train < 1 or n_test < 2:
        raise DatasetError(f"export needs n_train >= 1 and n_test >= 2, got n_train={n_train}, n_test={n_test}")
    out = Path(out_dir)
    for index, name in enumerate(classes or PRODUCT_CLASSES):
        if name not in PRODUCT_CLASSES:
            raise DatasetError(f"unknown synthetic class {name!r}; choose from {list(PRODUCT_CLASSES)}")
        base = out / name
        for i, image in enumerate(normal_images(name, n_train, image_size_px=image_size_px, seed=seed + 7919 * index)):
            _write(base / "train" / "good" / f"{i:03d}.png", image)
        line = SyntheticLine(product_classes=(name,), defect_rate=0.5, image_size_px=image_size_px,
                             seed=seed + 104729 + 7919 * index)
        want_good, want_bad = n_test // 2, n_test - n_test // 2
        for _ in range(50 * n_test):
            if want_good == 0 and want_bad == 0:
                break
            frame = line.next_frame(name)
            if frame.is_defective and want_bad > 0:
                kind = frame.defect_kind or "defect"
                stem = f"{n_test - want_bad - want_good:03d}"
                _write(base / "test" / kind / f"{stem}.png", frame.image)
                _write(base / "ground_truth" / kind / f"{stem}_mask.png", (frame.mask > 0).astype(np.uint8) * 255)
                want_bad -= 1
            elif not frame.is_defective and want_good > 0:
                _write(base / "test" / "good" / f"{n_test - want_bad - want_good:03d}.png", frame.image)
                want_good -= 1
        (base / "ground_truth").mkdir(parents=True, exist_ok=True)
    return out


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image if image.ndim == 2 else image[:, :, ::-1]  # RGB -> BGR for OpenCV
    if not cv2.imwrite(str(path), np.ascontiguousarray(data)):
        raise DatasetError(f"cannot write {str(path)!r}")
