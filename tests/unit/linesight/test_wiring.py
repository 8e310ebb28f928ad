"""One data folder, read-only commands, quiet logs, one field naming, relative times, the demo's folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from linesight.cli import main
from linesight.settings import load_settings
from tests.unit.storage.helpers import make_record

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch) -> Path:
    """LINESIGHT_DATA_DIR pointed at an empty temporary folder; no database URL set."""
    monkeypatch.delenv("LINESIGHT_DATABASE_URL", raising=False)
    folder = tmp_path / "data"
    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(folder))
    return folder


def _seed(settings, records) -> None:
    from linesight.data_folder import open_repository

    repository = open_repository(settings, write=True)
    repository.upsert_inspections(records)
    repository.database.dispose()


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith(("{", "["))]


def test_the_database_lives_in_the_data_folder(data_dir: Path) -> None:
    assert load_settings().database_url == f"sqlite:///{data_dir / 'linesight.db'}"
    assert load_settings(database_url="sqlite://").database_url == "sqlite://"  # an explicit URL wins
    assert load_settings(data_dir="/srv/x").database_url == "sqlite:////srv/x/linesight.db"


def test_a_trained_checkpoint_in_the_data_folder_is_used_unless_one_is_set(data_dir: Path, monkeypatch,
                                                                          tmp_path: Path) -> None:
    monkeypatch.delenv("LINESIGHT_CHECKPOINT_DIR", raising=False)
    folder = data_dir / "checkpoint"
    folder.mkdir(parents=True)
    assert load_settings().checkpoint_dir is None  # a folder without a trained prompt learner: not picked up
    (folder / "prompt_learner.safetensors").write_bytes(b"written by linesight train")
    assert load_settings().checkpoint_dir == folder
    monkeypatch.setenv("LINESIGHT_CHECKPOINT_DIR", str(tmp_path / "elsewhere"))
    assert load_settings().checkpoint_dir == tmp_path / "elsewhere"  # an explicit setting wins
    assert load_settings(checkpoint_dir=tmp_path / "mine").checkpoint_dir == tmp_path / "mine"


def test_history_reads_what_the_demo_wrote(data_dir: Path, capsys) -> None:
    """The old trap: the demo wrote <out>/linesight.db while history read linesight-data/linesight.db."""
    from linesight.demo import DemoConfig, demo_settings
    from storage.db import sqlite_file

    demo = demo_settings(DemoConfig(out_dir=data_dir, llm_verdicts=False))
    assert sqlite_file(demo.database_url).resolve() == sqlite_file(load_settings().database_url).resolve()
    data_dir.mkdir()
    _seed(demo, [make_record(i) for i in range(3)])
    assert main(["history", "--json"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert {row["frame_id"] for row in rows} == {"f-0", "f-1", "f-2"}
    assert all("product_class" in row and "class" not in row for row in rows)


@pytest.mark.parametrize("argv", [["history"], ["bank", "list"], ["chat", "1"], ["bank", "activate", "brick", "1"]])
def test_read_only_commands_never_create_a_database(data_dir: Path, capsys, argv: list[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line
    assert f"no linesight database at {data_dir / 'linesight.db'}" in err
    assert "linesight migrate" in err
    assert not data_dir.exists()  # neither the file nor its folder


def test_read_only_commands_refuse_an_empty_or_older_database(data_dir: Path, capsys) -> None:
    import sqlite3

    data_dir.mkdir()
    sqlite3.connect(data_dir / "linesight.db").close()  # an empty file
    assert main(["history"]) == 2
    assert "holds no linesight schema" in capsys.readouterr().err
    assert main(["migrate"]) == 0
    assert "at schema revision" in capsys.readouterr().out
    with sqlite3.connect(data_dir / "linesight.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000'")
    assert main(["history"]) == 2
    err = capsys.readouterr().err
    assert "is at schema revision 0000" in err
    assert "linesight migrate" in err
    with sqlite3.connect(data_dir / "linesight.db") as conn:  # history did not migrate it
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0000",)


def _run_cli(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "linesight.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_logs_are_quiet_by_default_and_verbose_on_request(tmp_path: Path) -> None:
    env = {"LINESIGHT_DATA_DIR": str(tmp_path / "data")}
    env.pop("LINESIGHT_DATABASE_URL", None)
    quiet = _run_cli(["migrate"], env)
    assert quiet.returncode == 0, quiet.stderr
    assert "alembic" not in quiet.stderr, quiet.stderr
    assert "INFO" not in quiet.stderr, quiet.stderr
    history = _run_cli(["history"], env)
    assert history.returncode == 0, history.stderr
    assert history.stderr == ""
    loud = _run_cli(["-v", "migrate"], {"LINESIGHT_DATA_DIR": str(tmp_path / "other")})
    assert loud.returncode == 0
    assert "alembic.runtime.migration" in loud.stderr  # the library's INFO lines come back with -v


def test_kafka_info_lines_are_off_unless_verbose(data_dir: Path, capsys) -> None:
    import logging

    main(["migrate"])
    logging.getLogger("kafka.conn").info("connecting to 127.0.0.1:9092")
    logging.getLogger("linesight.run").info("stored 5")
    err = capsys.readouterr().err
    assert "connecting to" not in err
    assert "stored 5" in err
    main(["-v", "migrate"])
    logging.getLogger("kafka.conn").info("connecting to 127.0.0.1:9092")
    assert "connecting to" in capsys.readouterr().err


def test_history_takes_times_ago_and_iso(data_dir: Path, capsys) -> None:
    now = datetime.now(UTC)
    ages_h = {"f-old": 5.0, "f-mid": 1.5, "f-new": 0.1}
    _seed(load_settings(), [make_record(i, frame_id=fid, captured_at=now - timedelta(hours=age))
                            for i, (fid, age) in enumerate(ages_h.items())])
    for argv, expected in (
        (["--since", "2h"], {"f-mid", "f-new"}),
        (["--since", "2h", "--until", "30m"], {"f-mid"}),
        (["--until", "3h"], {"f-old"}),
        (["--since", (now - timedelta(hours=3)).isoformat()], {"f-mid", "f-new"}),
    ):
        assert main(["history", "--json", *argv]) == 0
        assert {row["frame_id"] for row in _json_lines(capsys.readouterr().out)} == expected, argv
    with pytest.raises(SystemExit):
        main(["history", "--since", "2 fortnights"])
    assert "'2 fortnights'" in capsys.readouterr().err


def test_demo_refuses_a_folder_it_did_not_create(tmp_path: Path, capsys) -> None:
    from linesight.data_folder import DEMO_MARKER, prepare_demo_folder

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not mine")
    assert main(["demo", "--out", str(foreign), "--frames-per-line", "1"]) == 2
    err = capsys.readouterr().err
    assert "holiday.jpg" in err
    assert DEMO_MARKER in err
    assert "--out" in err
    assert (foreign / "holiday.jpg").read_bytes() == b"not mine"

    mine = tmp_path / "demo"
    assert prepare_demo_folder(mine) == []
    (mine / "banks").mkdir()
    (mine / "linesight.db").write_bytes(b"x")
    (mine / "checkpoint").mkdir()  # made by `linesight train`, not by the demo: kept
    assert prepare_demo_folder(mine) == ["linesight.db", "banks", DEMO_MARKER]
    assert sorted(p.name for p in mine.iterdir()) == [DEMO_MARKER, "checkpoint"]


def test_camera_names_its_lines(capsys) -> None:
    from linesight.commands.camera import line_names

    assert line_names([["press-a"], ["press-b", "press-c"]], None) == [
        ("press-a", "cam-press-a"), ("press-b", "cam-press-b"), ("press-c", "cam-press-c")]
    assert line_names(None, 2) == [("line-1", "cam-1"), ("line-2", "cam-2")]
    assert main(["camera", "--line-id", "a,b", "--lines", "3"]) == 2
    assert "--lines 3 disagrees" in capsys.readouterr().err
    assert main(["camera", "--line-id", "a", "--line-id", "a"]) == 2
    assert "--line-id 'a' is given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["camera", "--line-id", "bad name!"])
    assert "'bad name!'" in capsys.readouterr().err


def test_cli_json_uses_the_api_and_alert_field_names(data_dir: Path, capsys) -> None:
    from connectors.alerts import Alert
    from linesight.api.schemas import Bank, Inspection
    from linesight.commands.inspect import FIELDS

    _seed(load_settings(), [make_record(0)])
    assert main(["history", "--json"]) == 0
    (row,) = _json_lines(capsys.readouterr().out)
    assert set(row) <= set(Inspection.model_fields)
    shared_with_alerts = set(row) & set(Alert.model_fields)
    assert {"product_class", "line_id", "score", "threshold", "positions", "verdict", "bank_version"} <= shared_with_alerts
    assert set(FIELDS) - {"image", "mode", "overlay", "error"} <= set(Inspection.model_fields)
    assert main(["bank", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    from linesight.commands.bank import _row

    class _BankRow:  # the columns _row reads, as storage returns them
        product_class, version, active, shots, encoder, path = "brick", 1, True, 4, "efficientnet-lite0", "/b"
        calibration = {"threshold": 0.3}
        created_at = datetime(2026, 1, 1, tzinfo=UTC)
        reference_frames = ("f-1", "f-2")

    assert set(_row(_BankRow())) - {"threshold", "path"} <= set(Bank.model_fields)


def test_run_serves_metrics_of_the_data_folder(data_dir: Path) -> None:
    """What `linesight run --metrics-port P` starts: here without Ray, so the stream reads as down."""
    import socket
    import urllib.request

    from linesight.commands.run import _serve_metrics

    _seed(load_settings(), [make_record(i) for i in range(4)])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _serve_metrics(load_settings(), port)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
    assert "linesight_stream_up 0.0" in text
    assert 'linesight_inspections_total{line="line-0",product_class="bottle"} 2.0' in text
    assert 'linesight_inspections_flagged_total{line="line-1",product_class="screw"} 1.0' in text


def test_transformers_weight_loading_bars_are_off_unless_verbose(monkeypatch) -> None:
    from linesight.cli import configure_logging

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # so that teardown restores what was there
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    configure_logging(1)
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ
    configure_logging(0)
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
