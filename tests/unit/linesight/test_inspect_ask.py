"""`linesight inspect IMAGE --class C --ask "..."`: a grounded answer about one image, nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from linesight.cli import main
from training.synthetic import normal_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Path:
    from tests.unit.pipeline.services.test_dialogue import looping_llm
    from tests.unit.pipeline.stream.test_verdicts import save_llm

    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LINESIGHT_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'linesight.db'}")
    monkeypatch.setenv("LINESIGHT_LLM_PATH", str(save_llm(looping_llm(), tmp_path / "llm")))
    shots = tmp_path / "shots"
    shots.mkdir()
    for i, image in enumerate(normal_images("washer", 3, seed=11)):
        cv2.imwrite(str(shots / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return tmp_path


def test_ask_answers_from_the_frames_facts_and_stores_nothing(workspace: Path, capsys) -> None:
    from storage.db import Database
    from storage.repository import Repository

    assert main(["bank", "build", "--class", "washer", "--images", str(workspace / "shots")]) == 0
    capsys.readouterr()
    image = workspace / "shots" / "0.png"
    assert main(["inspect", str(image), "--class", "washer", "--ask", "  How sure are you? "]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["question"] == "How sure are you?"
    assert out["answer_source"] == "facts"  # the looping LLM's text is never shown
    ratio = out["score"] / out["threshold"]
    assert out["answer"].startswith(f"Score {out['score']:.2f} against threshold {out['threshold']:.2f} ({ratio:.2f}x")
    database = Database(f"sqlite:///{workspace / 'data' / 'linesight.db'}")
    assert Repository(database).count_inspections() == 0
    database.dispose()

    assert main(["inspect", str(workspace / "shots"), "--class", "washer", "--ask", "Where?"]) == 2
    assert "--ask asks about one image, not a folder" in capsys.readouterr().err
