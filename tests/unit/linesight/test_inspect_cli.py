"""`linesight inspect`: with a bank, with --zero-shot (a trained decoder, no bank), and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from linesight.cli import main
from training.synthetic import normal_images


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LINESIGHT_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'linesight.db'}")
    shots = tmp_path / "shots"
    shots.mkdir()
    for i, image in enumerate(normal_images("washer", 3, seed=11)):
        cv2.imwrite(str(shots / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return tmp_path


def _checkpoint(folder: Path) -> Path:
    from model.decoder import TextAlignedDecoder, save_decoder
    from model.encoders.efficientnet import EfficientNetLiteEncoder

    encoder = EfficientNetLiteEncoder()
    folder.mkdir()
    save_decoder(TextAlignedDecoder(encoder.stage_channels, 384, image_size_px=encoder.image_size_px),
                 folder / "decoder.safetensors")
    return folder


def test_inspect_with_the_active_bank_then_zero_shot_for_a_new_class(workspace: Path, capsys, monkeypatch) -> None:
    image = workspace / "shots" / "0.png"
    assert main(["inspect", str(image), "--class", "washer"]) == 2
    assert "no linesight database at" in capsys.readouterr().err  # read-only: nothing created
    assert not (workspace / "data").exists()
    assert main(["bank", "build", "--class", "washer", "--images", str(workspace / "shots")]) == 0
    capsys.readouterr()
    assert main(["inspect", str(image), "--class", "brick"]) == 2
    assert "no active bank for class 'brick' (active: washer)" in capsys.readouterr().err
    assert main(["inspect", str(image), "--class", "washer"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["mode"] == "few_only"
    assert out["product_class"] == "washer"
    assert "class" not in out
    assert out["bank_version"] == 1
    assert out["is_anomalous"] == (out["score"] > out["threshold"])
    assert Path(out["overlay"]) == workspace / "data" / "inspect" / "0.overlay.png"  # never beside the input
    assert Path(out["overlay"]).is_file()
    assert sorted(p.name for p in (workspace / "shots").iterdir()) == ["0.png", "1.png", "2.png"]

    assert main(["inspect", str(image), "--class", "gasket", "--zero-shot"]) == 2
    assert "LINESIGHT_CHECKPOINT_DIR" in capsys.readouterr().err
    monkeypatch.setenv("LINESIGHT_CHECKPOINT_DIR", str(_checkpoint(workspace / "ckpt")))
    assert main(["inspect", str(image), "--class", "gasket", "--zero-shot"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["mode"] == "zero_shot"
    assert out["bank_version"] is None
    assert out["threshold"] == 0.5
    assert 0.0 <= out["score"] <= 1.0

    monkeypatch.setenv("LINESIGHT_MAP_FUSION", "max")
    assert main(["inspect", str(image), "--class", "washer"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["mode"] == "max"
    assert out["threshold"] == 1.0


def test_fusion_without_a_checkpoint_is_a_named_setting_error(workspace: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("LINESIGHT_MAP_FUSION", "mean")
    assert main(["history"]) == 2
    err = capsys.readouterr().err
    assert "map_fusion='mean' needs checkpoint_dir" in err
    assert "Traceback" not in err
    monkeypatch.setenv("LINESIGHT_MAP_FUSION", "median")
    assert main(["history"]) == 2
    assert "map_fusion='median'" in capsys.readouterr().err


def test_a_checkpoint_without_a_decoder_is_named(workspace: Path, capsys, monkeypatch) -> None:
    (workspace / "empty").mkdir()
    monkeypatch.setenv("LINESIGHT_CHECKPOINT_DIR", str(workspace / "empty"))
    assert main(["inspect", str(workspace / "shots" / "0.png"), "--class", "gasket", "--zero-shot"]) == 2
    err = capsys.readouterr().err
    assert "decoder.safetensors does not exist" in err


def test_zero_shot_classes_are_checked_names_and_need_a_checkpoint(workspace: Path, capsys, monkeypatch) -> None:
    from linesight.settings import load_settings

    monkeypatch.setenv("LINESIGHT_ZERO_SHOT_CLASSES", "gasket, o-ring")
    assert main(["history"]) == 2
    assert "zero_shot_classes='gasket,o-ring' needs checkpoint_dir" in capsys.readouterr().err
    monkeypatch.setenv("LINESIGHT_CHECKPOINT_DIR", str(workspace))
    assert load_settings().zero_shot_class_names == ("gasket", "o-ring")
    monkeypatch.setenv("LINESIGHT_ZERO_SHOT_CLASSES", "gasket,bad name!")
    assert main(["history"]) == 2
    assert "'bad name!'" in capsys.readouterr().err


def test_inspect_a_folder_writes_a_table_csv_json_and_overlays_elsewhere(workspace: Path, capsys) -> None:
    import csv

    shots = workspace / "shots"
    assert main(["bank", "build", "--class", "washer", "--images", str(shots)]) == 0
    (shots / "sub").mkdir()
    (shots / "sub" / "3.png").write_bytes((shots / "0.png").read_bytes())
    (shots / "0.overlay.png").write_bytes((shots / "0.png").read_bytes())  # an earlier tool's output: skipped
    (shots / "broken.png").write_bytes(b"not a png")
    capsys.readouterr()
    out_dir = workspace / "out"
    code = main(["inspect", str(shots), "--class", "washer", "--out", str(out_dir),
                 "--csv", str(workspace / "rows.csv"), "--json", str(workspace / "rows.json")])
    assert code == 1  # one unreadable image: named, not dropped
    captured = capsys.readouterr()
    assert "4 image(s) scored" in captured.out
    assert "1 unreadable" in captured.out
    assert "broken.png" in captured.err
    rows = json.loads((workspace / "rows.json").read_text())
    assert [Path(r["image"]).name for r in rows] == ["0.png", "1.png", "2.png", "broken.png", "3.png"]
    assert rows[3]["error"]
    assert rows[3]["score"] is None
    assert all(r["product_class"] == "washer" for r in rows)
    with (workspace / "rows.csv").open() as handle:
        assert [r["image"] for r in csv.DictReader(handle)] == [r["image"] for r in rows]
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "0.overlay.png", "1.overlay.png", "2.overlay.png", "sub__3.overlay.png"]
    assert not any(p.name.endswith(".overlay.png") and p.parent == shots / "sub" for p in shots.rglob("*"))
    assert main(["inspect", str(shots), "--class", "washer", "--overlay", str(workspace / "x.png")]) == 2
    assert "--overlay names one file" in capsys.readouterr().err


def test_inspect_with_a_bank_file_needs_no_database(workspace: Path, capsys, monkeypatch) -> None:
    assert main(["bank", "build", "--class", "washer", "--images", str(workspace / "shots")]) == 0
    bank_file = workspace / "data" / "banks" / "washer" / "v1.safetensors"
    assert bank_file.is_file()
    elsewhere = workspace / "elsewhere"
    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(elsewhere))
    monkeypatch.delenv("LINESIGHT_DATABASE_URL")
    capsys.readouterr()
    assert main(["inspect", str(workspace / "shots" / "1.png"), "--class", "washer", "--bank", str(bank_file),
                 "--no-overlay"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["bank_version"] == 1
    assert out["overlay"] is None
    assert not elsewhere.exists()  # no database, no output folder
