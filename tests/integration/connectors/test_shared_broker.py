"""One embedded broker per data folder, with the real Tansu binary: commands share it, the last user stops
it, a stale record is cleaned up, an orphan is adopted (its frames kept), a hung broker is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.kafka import ensure_topics, make_producer
from connectors.shared_broker import (
    BROKER_FILE,
    _pid_alive,
    broker_status,
    shared_broker,
    start_broker,
    stop_broker,
)
from tests.integration.connectors.conftest import consume_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _cli(data_dir: Path, *args: str, timeout_s: float = 90.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "LINESIGHT_DATA_DIR": str(data_dir), "LINESIGHT_KAFKA_BOOTSTRAP_SERVERS": ""}
    return subprocess.run([sys.executable, "-m", "linesight.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout_s)


def _record(data_dir: Path) -> dict:
    return json.loads((data_dir / BROKER_FILE).read_text())


def _wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_two_commands_share_one_broker_and_the_last_one_stops_it(tmp_path):
    env = {**os.environ, "LINESIGHT_DATA_DIR": str(tmp_path), "LINESIGHT_KAFKA_BOOTSTRAP_SERVERS": ""}
    tail = subprocess.Popen([sys.executable, "-m", "linesight.cli", "alerts", "--timeout-s", "120"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (tmp_path / BROKER_FILE).exists() and tail.pid in _record(tmp_path)["clients"])
        first = _record(tmp_path)
        camera = _cli(tmp_path, "camera", "--count", "3", "--fps", "0", "--no-progress")
        assert camera.returncode == 0, camera.stderr
        assert f"on 127.0.0.1:{first['port']} " in camera.stdout  # reused, not a second broker
        after = _record(tmp_path)
        assert after["pid"] == first["pid"]
        assert after["clients"] == [tail.pid]
        status = _cli(tmp_path, "broker", "status", "--json")
        report = json.loads(status.stdout.strip().splitlines()[-1])
        assert status.returncode == 0
        assert report["state"] == "running"
        assert report["pid"] == first["pid"]
        assert report["clients"] == [tail.pid]
        # the frames the camera published are on the shared broker
        assert len(consume_all(f"127.0.0.1:{first['port']}", "linesight.frames", expected=3, timeout_s=20)) == 3
    finally:
        tail.send_signal(signal.SIGINT)
        tail.communicate(timeout=60)
    assert tail.returncode == 0
    assert not (tmp_path / BROKER_FILE).exists()  # the last user stopped it
    assert not _pid_alive(first["pid"])
    status = _cli(tmp_path, "broker", "status")
    assert status.returncode == 1
    assert "stopped" in status.stdout


def test_a_stale_record_is_reported_and_replaced(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / BROKER_FILE).write_text(json.dumps(
        {"pid": gone.pid, "host": "127.0.0.1", "port": 9, "started_at": "", "log_path": "", "clients": [gone.pid]}
    ))
    status = _cli(tmp_path, "broker", "status")
    assert status.returncode == 1
    assert f"broker pid {gone.pid} is not running" in status.stdout
    with shared_broker(tmp_path) as servers:
        record = _record(tmp_path)
        assert record["pid"] != gone.pid
        assert servers == f"127.0.0.1:{record['port']}"
        assert record["clients"] == [os.getpid()]
    assert broker_status(tmp_path).state == "stopped"
    assert not _pid_alive(record["pid"])


def test_a_broker_left_by_a_crashed_command_is_adopted_with_its_frames_then_stopped(tmp_path):
    record, started = start_broker(tmp_path)
    assert started
    ensure_topics(record.bootstrap_servers, {"frames": 1})
    producer = make_producer(record.bootstrap_servers, max_request_size=1 << 20)
    for index in range(4):
        producer.send("frames", value=f"unconsumed-{index}".encode())
    producer.close()
    crashed = subprocess.Popen(["true"])
    crashed.wait()
    # what a `run` killed with SIGKILL leaves: a broker nobody keeps, used by a process that is gone
    data = _record(tmp_path)
    (tmp_path / BROKER_FILE).write_text(json.dumps({**data, "keep": False, "clients": [crashed.pid]}))
    with shared_broker(tmp_path) as servers:
        assert servers == record.bootstrap_servers  # the restarted command finds the same broker
        assert len(consume_all(servers, "frames", expected=4, timeout_s=20)) == 4  # and the frames waiting there
    assert broker_status(tmp_path).state == "stopped"  # the adopter was its last user
    assert not _pid_alive(record.pid)


def test_a_hung_broker_is_killed_and_replaced(tmp_path):
    record, _ = start_broker(tmp_path)
    os.kill(record.pid, signal.SIGSTOP)  # alive, port open, no Kafka answer
    try:
        assert broker_status(tmp_path).state == "hung"
        with shared_broker(tmp_path) as servers:
            assert _record(tmp_path)["pid"] != record.pid
            assert servers == f"127.0.0.1:{_record(tmp_path)['port']}"
            assert not _pid_alive(record.pid)
    finally:
        if _pid_alive(record.pid):
            os.kill(record.pid, signal.SIGKILL)
    assert stop_broker(tmp_path).state == "stopped"  # the new one (not kept) already stopped with its user


def test_two_uses_in_one_process_count_twice(tmp_path):
    with shared_broker(tmp_path) as outer:
        with shared_broker(tmp_path) as inner:
            assert inner == outer
            assert _record(tmp_path)["clients"] == [os.getpid(), os.getpid()]
        assert broker_status(tmp_path).state == "running"  # the outer use still holds it
    assert broker_status(tmp_path).state == "stopped"


def test_the_demo_refuses_to_wipe_a_folder_whose_broker_runs(tmp_path):
    from linesight.demo import DemoConfig, run_demo
    from linesight.errors import ConfigError

    out = tmp_path / "demo"
    record, _ = start_broker(out)
    try:
        with pytest.raises(ConfigError, match=f"runs on {record.bootstrap_servers}"):
            run_demo(DemoConfig(out_dir=out))
        assert (out / BROKER_FILE).exists()  # nothing wiped
    finally:
        stop_broker(out)
    assert not _pid_alive(record.pid)


def test_camera_then_run_on_a_kept_broker_the_documented_workflow(tmp_path):
    """`broker start`, `camera` publishes, `run` (another process) consumes from the same broker; its
    heartbeat file counts them. No bank exists, so every frame is dead-lettered as unknown_class."""
    env = {**os.environ, "LINESIGHT_DATA_DIR": str(tmp_path), "LINESIGHT_KAFKA_BOOTSTRAP_SERVERS": "",
           "LINESIGHT_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}", "LINESIGHT_RAY_NUM_CPUS": "2",
           "LINESIGHT_FRAMES_PARTITIONS": "1", "RAY_AUTH_MODE": "disabled"}
    assert _cli(tmp_path, "broker", "start").returncode == 0
    try:
        camera = _cli(tmp_path, "camera", "--count", "6", "--fps", "0", "--no-progress")
        assert camera.returncode == 0, camera.stderr
        beat = tmp_path / "stream.json"
        run = subprocess.Popen(
            [sys.executable, "-m", "linesight.cli", "run", "--max-seconds", "300", "--report-every-s", "1",
             "--health-file", str(beat)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait_for(lambda: beat.exists() and json.loads(beat.read_text())["dead_lettered"] >= 6, timeout_s=240)
        finally:
            run.send_signal(signal.SIGTERM)
            output = run.communicate(timeout=120)[0]
        assert run.returncode == 0, output[-2000:]
        assert json.loads(beat.read_text())["dead_lettered"] == 6
        assert f"reusing the embedded broker on 127.0.0.1:{_record(tmp_path)['port']}" in output
        assert _record(tmp_path)["clients"] == []  # run left; the kept broker stays for the next command
    finally:
        assert _cli(tmp_path, "broker", "stop").returncode == 0
