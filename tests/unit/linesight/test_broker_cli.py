"""``linesight broker`` paths that need no running broker: status of an empty or stale folder, refusals."""

import json
import subprocess

import pytest

from connectors.shared_broker import BROKER_FILE, broker_status
from linesight.cli import main


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LINESIGHT_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    return tmp_path


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_status_of_a_folder_without_a_broker(data_dir, capsys):
    assert main(["broker", "status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["state"] == "stopped"
    assert report["pid"] is None


def test_status_reports_a_stale_record_and_stop_removes_it(data_dir, capsys):
    pid = _dead_pid()
    (data_dir / BROKER_FILE).write_text(json.dumps({"pid": pid, "host": "127.0.0.1", "port": 9, "clients": []}))
    assert main(["broker", "status"]) == 1
    assert f"stale (broker pid {pid} is not running)" in capsys.readouterr().out
    assert main(["broker", "stop"]) == 0
    assert "removed a stale record" in capsys.readouterr().out
    assert not (data_dir / BROKER_FILE).exists()


def test_a_record_naming_another_program_is_stale_not_killed(data_dir):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (data_dir / BROKER_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": "127.0.0.1", "port": 9}))
        status = broker_status(data_dir)
        assert status.state == "stale"
        assert "no longer a Tansu broker" in status.detail
        assert main(["broker", "stop"]) == 0
        assert sleeper.poll() is None  # a reused pid is never signalled
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_unreadable_record_counts_as_no_broker(data_dir):
    (data_dir / BROKER_FILE).write_text("{not json")
    assert broker_status(data_dir).state == "stopped"


def test_start_refuses_when_kafka_is_configured(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("LINESIGHT_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    assert main(["broker", "start"]) == 2
    assert "LINESIGHT_KAFKA_BOOTSTRAP_SERVERS='kafka:9092' is set" in capsys.readouterr().err
    assert not (data_dir / BROKER_FILE).exists()


def test_start_port_is_validated(data_dir):
    with pytest.raises(SystemExit) as info:
        main(["broker", "start", "--port", "70000"])
    assert info.value.code == 2
