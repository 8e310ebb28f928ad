"""``linesight feedback`` and ``linesight ack`` on a SQLite file: stored labels, one-line errors."""

from __future__ import annotations

import json

import pytest

from linesight.cli import main
from storage.db import Database
from storage.repository import Repository
from tests.unit.storage.helpers import make_record


@pytest.fixture
def repository(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    monkeypatch.setenv("LINESIGHT_DATABASE_URL", url)
    database = Database(url)
    database.migrate()
    repo = Repository(database)
    repo.upsert_inspections([make_record(i) for i in range(4)])  # f-0 and f-3 flagged
    yield repo
    database.dispose()


def _id(repository, frame_id):
    return repository.get_inspection_by_frame(frame_id).id


def test_feedback_stores_the_label_and_the_newest_wins(repository, capsys):
    flagged = _id(repository, "f-3")
    assert main(["feedback", str(flagged), "false-alarm", "--note", "glare", "--actor", "ana"]) == 0
    assert "labelled false_alarm (glare) by ana" in capsys.readouterr().out
    assert repository.get_feedback("f-3").label == "false_alarm"
    assert main(["feedback", str(flagged), "defect", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["id"], printed["label"]) == (flagged, "defect")
    assert repository.feedback_for_class("screw", "defect") == ["f-3"]
    assert repository.feedback_for_class("screw", "false_alarm") == []


def test_ack_is_stored_once(repository, capsys):
    flagged = _id(repository, "f-0")
    assert main(["ack", str(flagged), "--actor", "ana"]) == 0
    assert main(["ack", str(flagged), "--actor", "bo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["acknowledged_by"] == "ana"


def test_bad_input_is_one_line_naming_the_value(repository, capsys):
    assert main(["feedback", "999", "defect"]) == 2
    assert "no inspection with id 999" in capsys.readouterr().err
    assert main(["feedback", str(_id(repository, "f-1")), "false-alarm"]) == 2
    err = capsys.readouterr().err
    assert "'f-1' was not flagged" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["feedback", "1", "maybe"])
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
    assert main(["ack", "999"]) == 2
    assert "no inspection with id 999" in capsys.readouterr().err
