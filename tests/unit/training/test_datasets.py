"""Dataset loaders on tiny layouts written in tmp_path (MVTec, VisA CSV, folder) and their errors."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.datasets import detect_layout, export_synthetic_dataset, load_dataset
from training.exceptions import DatasetError

RED = (255, 0, 0)


def _png(path: Path, colour=RED, size: int = 32, mask_box: tuple[int, int, int, int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mask_box is None:
        image = np.zeros((size, size, 3), np.uint8)
        image[:] = colour
        cv2.imwrite(str(path), image[:, :, ::-1])
    else:
        mask = np.zeros((size, size), np.uint8)
        top, left, h, w = mask_box
        mask[top : top + h, left : left + w] = 255
        cv2.imwrite(str(path), mask)
    return path


def _mvtec(root: Path, name: str = "widget", masks: bool = True) -> Path:
    base = root / name
    for i in range(3):
        _png(base / "train" / "good" / f"{i:03d}.png")
    _png(base / "test" / "good" / "000.png")
    _png(base / "test" / "crack" / "000.png", colour=(0, 0, 255))
    _png(base / "test" / "crack" / "001.png", colour=(0, 0, 255))
    if masks:
        _png(base / "ground_truth" / "crack" / "000_mask.png", mask_box=(4, 4, 8, 8))
        _png(base / "ground_truth" / "crack" / "001_mask.png", mask_box=(20, 20, 4, 4))
    return root


def test_mvtec_layout_is_detected_and_indexed(tmp_path):
    data = load_dataset(_mvtec(tmp_path))
    assert data.layout == "mvtec"
    widget = data.classes["widget"]
    assert len(widget.train) == 3
    assert widget.has_masks
    assert [(s.label, s.defect_type) for s in widget.test] == [(1, "crack"), (1, "crack"), (0, "good")]
    assert widget.test[0].mask_path.name == "000_mask.png"


def test_images_load_lazily_as_uint8_rgb_and_masks_as_binary(tmp_path):
    widget = load_dataset(_mvtec(tmp_path)).classes["widget"]
    image = widget.train[0].load_image()
    assert image.dtype == np.uint8
    assert image.shape == (32, 32, 3)
    assert tuple(image[0, 0]) == RED  # RGB order, not OpenCV's BGR
    assert widget.train[0].load_image(16).shape == (16, 16, 3)
    mask = widget.test[0].load_mask()
    assert set(np.unique(mask)) == {0, 1}
    assert int(mask.sum()) == 64
    assert widget.test[0].load_mask(16).sum() == 16
    assert not widget.test[2].load_mask(16).any()  # good image: zero mask


def test_mvtec_missing_mask_file_is_named(tmp_path):
    _mvtec(tmp_path)
    (tmp_path / "widget" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match="001_mask.png"):
        load_dataset(tmp_path, layout="mvtec")


def test_mvtec_missing_folders_are_named(tmp_path):
    _mvtec(tmp_path, masks=False)
    with pytest.raises(DatasetError, match="ground_truth"):
        load_dataset(tmp_path, layout="mvtec")
    broken = tmp_path / "other"
    (broken / "train" / "bad").mkdir(parents=True)
    (broken / "test").mkdir()
    with pytest.raises(DatasetError, match=r"other/train/good"):
        load_dataset(tmp_path, layout="folder")


def test_folder_layout_without_masks_means_image_level_only(tmp_path):
    _mvtec(tmp_path, masks=False)
    assert detect_layout(tmp_path) == "folder"
    widget = load_dataset(tmp_path).classes["widget"]
    assert not widget.has_masks
    assert all(s.mask_path is None for s in widget.test)


def test_folder_layout_accepts_a_class_folder_as_root_and_masks_without_suffix(tmp_path):
    base = tmp_path / "part"
    _png(base / "train" / "good" / "a.jpg")
    _png(base / "test" / "dent" / "b.png")
    _png(base / "ground_truth" / "dent" / "b.png", mask_box=(0, 0, 2, 2))
    data = load_dataset(base, layout="folder")
    assert list(data.classes) == ["part"]
    assert data.classes["part"].test[0].mask_path == base / "ground_truth" / "dent" / "b.png"


def test_class_selection_and_unknown_class(tmp_path):
    _mvtec(tmp_path, "a")
    _mvtec(tmp_path, "b")
    assert list(load_dataset(tmp_path, classes=["b"]).classes) == ["b"]
    with pytest.raises(DatasetError, match="'c'"):
        load_dataset(tmp_path, classes=["c"])


def test_missing_root_and_bad_layout(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="'coco'"):
        load_dataset(tmp_path, layout="coco")
    with pytest.raises(DatasetError, match="no product class"):
        load_dataset(tmp_path, layout="folder")


def _visa(root: Path, rows: list[dict] | None = None, columns=("object", "split", "label", "image", "mask")) -> Path:
    base = root / "candle" / "Data"
    _png(base / "Images" / "Normal" / "0000.JPG")
    _png(base / "Images" / "Normal" / "0001.JPG")
    _png(base / "Images" / "Anomaly" / "0100.JPG")
    _png(base / "Masks" / "Anomaly" / "0100.png", mask_box=(1, 1, 5, 5))
    rows = rows or [
        {"object": "candle", "split": "train", "label": "normal", "image": "candle/Data/Images/Normal/0000.JPG", "mask": ""},
        {"object": "candle", "split": "test", "label": "normal", "image": "candle/Data/Images/Normal/0001.JPG", "mask": ""},
        {"object": "candle", "split": "test", "label": "anomaly", "image": "candle/Data/Images/Anomaly/0100.JPG",
         "mask": "candle/Data/Masks/Anomaly/0100.png"},
    ]
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_visa_csv_layout(tmp_path):
    data = load_dataset(_visa(tmp_path))
    assert data.layout == "visa"
    candle = data.classes["candle"]
    assert len(candle.train) == 1
    assert [s.label for s in candle.test] == [0, 1]
    assert candle.test[1].load_mask().sum() == 25


def test_visa_errors_name_the_file_or_column(tmp_path):
    with pytest.raises(DatasetError, match=r"split_csv/1cls.csv"):
        load_dataset(tmp_path, layout="visa")
    _visa(tmp_path, columns=("object", "split", "label", "image"))
    with pytest.raises(DatasetError, match=r"\['mask'\]"):
        load_dataset(tmp_path)
    _visa(tmp_path, rows=[{"object": "candle", "split": "test", "label": "anomaly",
                           "image": "candle/Data/Images/Anomaly/0100.JPG", "mask": "candle/Data/Masks/nope.png"}])
    with pytest.raises(DatasetError, match="nope.png"):
        load_dataset(tmp_path)


def test_export_synthetic_dataset_round_trips(tmp_path):
    root = export_synthetic_dataset(tmp_path, ["washer"], n_train=2, n_test=4, seed=0)
    data = load_dataset(root)
    washer = data.classes["washer"]
    assert data.layout == "mvtec"
    assert len(washer.train) == 2
    assert sorted(s.label for s in washer.test) == [0, 0, 1, 1]
    defective = next(s for s in washer.test if s.label)
    assert defective.load_mask().any()
    assert defective.load_image().shape == (224, 224, 3)
    again = export_synthetic_dataset(tmp_path / "again", ["washer"], n_train=2, n_test=4, seed=0)
    assert np.array_equal(load_dataset(again).classes["washer"].test[0].load_image(), washer.test[0].load_image())
    with pytest.raises(DatasetError, match="'teapot'"):
        export_synthetic_dataset(tmp_path / "x", ["teapot"])


def test_overlays_and_non_images_are_skipped_and_counted(tmp_path, caplog):
    import logging

    from training.datasets import export_synthetic_dataset, load_dataset

    root = export_synthetic_dataset(tmp_path / "ds", ["washer"], n_train=2, n_test=2, seed=0)
    clean = load_dataset(root)
    test_dir = next(p.parent for p in (s.path for s in clean.classes["washer"].test))
    first = sorted(test_dir.iterdir())[0]
    (test_dir / f"{first.stem}.overlay.png").write_bytes(first.read_bytes())  # `linesight inspect` used to do this
    (test_dir / f"{first.stem}_overlay.png").write_bytes(first.read_bytes())
    (test_dir / "notes.txt").write_text("operator notes")
    with caplog.at_level(logging.WARNING, logger="training.datasets"):
        dirty = load_dataset(root)
    assert [s.path for s in dirty.classes["washer"].test] == [s.path for s in clean.classes["washer"].test]
    assert len(dirty.skipped) == 3
    assert "skipped 3 file(s)" in caplog.text
