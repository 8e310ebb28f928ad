"""`linesight bank auto --images DIR`: a class with no bank and 5 % defects gets an active bank of normal frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from linesight.cli import main
from training.synthetic import SyntheticLine

FRAMES = 34  # seed 4: frames 1 and 33 are defective (5.9 %)


@pytest.fixture
def stream_folder(tmp_path: Path, monkeypatch, two_threads) -> tuple[Path, dict[str, bool]]:
    """The first frames of a new class as files, 5 % defective, and which file is defective."""
    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LINESIGHT_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'linesight.db'}")
    folder = tmp_path / "stream"
    folder.mkdir()
    line = SyntheticLine(("washer",), defect_rate=0.05, seed=4)
    truth = {}
    for index in range(FRAMES):
        frame = line.next_frame()
        name = f"frame-{index:03d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        truth[name] = frame.is_defective
    return folder, truth


def test_auto_bank_has_no_defective_reference_is_active_and_flags_later_defects(stream_folder, capsys) -> None:
    from linesight.settings import load_settings
    from model.bank import MemoryBank
    from model.detector import Detector
    from pipeline.services.banks import BankManager

    folder, truth = stream_folder
    assert sum(truth.values()) == 2  # the premise: some of the first frames are defective
    code = main(["bank", "auto", "--class", "washer", "--images", str(folder), "--frames", str(FRAMES), "--shots", "3",
                 "--no-rotations"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    references = [r["frame"] for r in out["references"]]
    assert len(references) == 3
    assert not any(truth[name] for name in references)  # no defective frame became a reference
    assert out["frames"] == FRAMES
    assert (out["version"], out["active"]) == (1, True)
    scores = [r["mutual_score"] for r in out["references"]]
    assert scores == sorted(scores)
    defective_flagged = [name for name in out["cold_start_flagged"] if truth[name]]
    assert defective_flagged  # the cold-start decision already flags defects among the first frames

    settings = load_settings()
    manager = BankManager(settings)
    rows = manager.list("washer")
    assert [(r.version, r.active, r.shots) for r in rows] == [(1, True, 3)]
    bank = MemoryBank.load(rows[0].path, expected_sha256=rows[0].sha256)
    later = SyntheticLine(("washer",), defect_rate=0.5, seed=99)
    frames = [later.next_frame() for _ in range(16)]
    results = Detector(manager.encoder).score_batch([f.image for f in frames], bank)
    labels = np.array([f.is_defective for f in frames])
    decisions = np.array([r.is_anomalous for r in results])
    assert labels.sum() >= 4
    assert decisions[labels].mean() >= 0.75  # later defects are flagged
    assert (~decisions[~labels]).mean() >= 0.75  # later normal frames pass


def test_operator_veto_excludes_a_frame_and_no_activate_keeps_the_old_version(stream_folder, capsys) -> None:
    folder, truth = stream_folder
    assert main(["bank", "auto", "--class", "washer", "--images", str(folder), "--frames", "8", "--shots", "2",
                 "--no-rotations"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    vetoed = first["references"][0]["frame"]
    assert main(["bank", "auto", "--class", "washer", "--images", str(folder), "--frames", "8", "--shots", "2", "--no-rotations",
                 "--exclude", vetoed, "--no-activate"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert vetoed not in [r["frame"] for r in second["references"]]
    assert (second["version"], second["active"]) == (2, False)
    assert main(["bank", "list", "--class", "washer", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted((r["version"], r["active"]) for r in listed) == [(1, True), (2, False)]


def test_too_few_frames_is_an_error_naming_the_counts(stream_folder, capsys) -> None:
    folder, _ = stream_folder
    assert main(["bank", "auto", "--class", "washer", "--images", str(folder), "--frames", "500"]) == 2
    err = capsys.readouterr().err
    assert f"found {FRAMES} frame(s)" in err
    assert "--frames asks for 500" in err
    assert main(["bank", "auto", "--class", "washer", "--images", str(folder), "--frames", "6", "--shots", "4"]) == 2
    assert "needs at least 8 frames, got 6" in capsys.readouterr().err
