import pytest

from linesight.cli import build_parser, main
from linesight.errors import ConfigError
from linesight.settings import load_settings


def test_defaults_are_embedded():
    settings = load_settings()
    assert settings.kafka_bootstrap_servers is None
    assert settings.database_url.startswith("sqlite:///")
    assert settings.ray_address is None


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("LINESIGHT_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("LINESIGHT_KAFKA_BOOTSTRAP_SERVERS", "  ")
    settings = load_settings()
    assert settings.max_batch_size == 8
    assert settings.kafka_bootstrap_servers is None


def test_bad_setting_names_field_and_value(monkeypatch):
    monkeypatch.setenv("LINESIGHT_MAX_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match=r"max_batch_size='lots'"):
        load_settings()


def test_every_command_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("run", "bank", "inspect", "history", "demo", "bench", "camera"):
        assert name in commands, name
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: linesight" in capsys.readouterr().out


def test_bad_argument_is_one_line_naming_the_value(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--lines", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "expected a whole number >= 1, got 0" in err
    assert "Traceback" not in err


def test_linesight_error_prints_one_line(capsys, monkeypatch):
    monkeypatch.setenv("LINESIGHT_TORCH_THREADS", "0")
    assert main(["history"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("linesight: error: invalid setting: torch_threads='0'")
    assert "Traceback" not in err


def test_history_filters_flagged_and_normal(tmp_path, capsys, monkeypatch):
    import json

    from storage.db import Database
    from storage.repository import Repository
    from tests.unit.storage.helpers import make_record

    url = f"sqlite:///{tmp_path / 'h.db'}"
    monkeypatch.setenv("LINESIGHT_DATABASE_URL", url)
    database = Database(url)
    database.migrate()
    Repository(database).upsert_inspections([make_record(i) for i in range(6)])  # every third flagged
    for flag, expected in (("--anomalous", {"f-0", "f-3"}), ("--normal", {"f-1", "f-2", "f-4", "f-5"})):
        assert main(["history", flag, "--json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        assert {row["frame_id"] for row in rows} == expected
    with pytest.raises(SystemExit):
        main(["history", "--anomalous", "--normal"])


def test_a_webhook_url_must_be_http(capsys, monkeypatch):
    monkeypatch.setenv("LINESIGHT_ALERT_WEBHOOK_URL", "ftp://alerts.example.com/in")
    assert main(["history"]) == 2
    err = capsys.readouterr().err
    assert "alert_webhook_url='ftp://alerts.example.com/in'" in err
    assert "http://" in err
    monkeypatch.setenv("LINESIGHT_ALERT_WEBHOOK_URL", " ")
    assert load_settings().alert_webhook_url is None  # empty = no webhook
