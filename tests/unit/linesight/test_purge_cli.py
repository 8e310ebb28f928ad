"""`linesight purge`: a dry run by default, --delete deletes, LINESIGHT_RETENTION_DAYS as the default age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from linesight.cli import main
from linesight.settings import load_settings
from tests.unit.storage.helpers import make_record


@pytest.fixture
def repository(tmp_path: Path, monkeypatch):
    from linesight.data_folder import open_repository

    monkeypatch.delenv("LINESIGHT_DATABASE_URL", raising=False)
    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(tmp_path / "data"))
    repository = open_repository(load_settings(), write=True)
    now = datetime.now(UTC)
    ages_days = [40, 35, 31, 10, 1, 0]
    repository.upsert_inspections([make_record(i, captured_at=now - timedelta(days=age))
                                   for i, age in enumerate(ages_days)])
    yield repository
    repository.database.dispose()


def test_purge_is_a_dry_run_unless_told_to_delete(repository, capsys):
    assert main(["purge", "--older-than", "30d"]) == 0
    out = capsys.readouterr().out
    assert "dry run: would delete 3 inspection(s)" in out
    assert "line-0" in out
    assert "line-1" in out
    assert repository.count_inspections() == 6
    assert main(["purge", "--older-than", "30d", "--delete", "--vacuum"]) == 0
    out = capsys.readouterr().out
    assert "deleted 3 inspection(s)" in out
    assert "VACUUM" in out
    assert repository.count_inspections() == 3
    assert main(["purge", "--older-than", "30d"]) == 0
    assert "nothing to purge" in capsys.readouterr().out


def test_retention_days_is_the_default_age(repository, capsys, monkeypatch):
    assert main(["purge"]) == 2
    assert "--older-than (e.g. 30d) or LINESIGHT_RETENTION_DAYS" in capsys.readouterr().err
    monkeypatch.setenv("LINESIGHT_RETENTION_DAYS", "5")
    assert main(["purge", "--delete"]) == 0
    assert repository.count_inspections() == 2
    monkeypatch.setenv("LINESIGHT_RETENTION_DAYS", "-1")
    assert main(["purge"]) == 2
    assert "retention_days='-1'" in capsys.readouterr().err


def test_purge_arguments_are_checked(repository, capsys):
    with pytest.raises(SystemExit):
        main(["purge", "--older-than", "30 days"])
    assert "'30 days'" in capsys.readouterr().err
    assert main(["purge", "--older-than", "1d", "--vacuum"]) == 2
    assert "--vacuum only follows --delete" in capsys.readouterr().err


def test_purge_never_creates_a_database(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LINESIGHT_DATABASE_URL", raising=False)
    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(tmp_path / "none"))
    assert main(["purge", "--older-than", "1d", "--delete"]) == 2
    assert "no linesight database at" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
