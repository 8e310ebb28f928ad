"""The stream's automatic self-calibration (once per version, reversible) and the operator's sensitivity
override, on a migrated SQLite file with small random bank files (no encoder is built)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from linesight.errors import ConfigError
from linesight.settings import load_settings
from model.bank import MemoryBank
from model.calibration import METHOD, OVERRIDE_METHOD, STREAM_METHOD, choose_threshold
from pipeline.banks import BankManager
from pipeline.self_calibration import SelfCalibrator, self_calibrator_for
from storage.banks import bank_file_path
from tests.unit.storage.helpers import make_record

N = 60  # frames a version scores before it is refined (the smallest allowed is 50)


@pytest.fixture
def manager(tmp_path):
    settings = load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}")
    manager = BankManager(settings)
    bank = MemoryBank([torch.randn(16, 4, generator=torch.Generator().manual_seed(0))], product_class="washer",
                      version=1, shots=2, encoder_name="tiny", image_size_px=64,
                      calibration=choose_threshold([0.2, 0.25, 0.3], [0.8, 0.9]))
    path = bank_file_path(settings.banks_dir, "washer", 1)
    path.parent.mkdir(parents=True)
    manager.repository.register_bank("washer", 1, str(path), bank.save(path), shots=2, encoder="tiny",
                                     calibration=bank.calibration.to_dict(), activate=True)
    return manager


def _stream(manager, count, version, *, start=0, level=0.2):
    """``count`` frames of the class as the stream stores them: scores around ``level``, scored by ``version``."""
    rng = np.random.default_rng(start)
    manager.repository.upsert_inspections([
        make_record(start + i, frame_id=f"s-{start + i}", product_class="washer", bank_version=version,
                    score=float(level + rng.normal(0, 0.005)))
        for i in range(count)
    ])


def _active(manager):
    return manager.repository.active_banks()["washer"]


def test_a_version_is_refined_once_after_n_frames_and_stays_reverted(manager):
    calibrator = SelfCalibrator(lambda: manager, N)
    bank_time = _active(manager).calibration["threshold"]
    _stream(manager, N - 1, 1)
    assert calibrator.run_once() == []  # one frame short
    _stream(manager, 1, 1, start=N - 1)
    assert calibrator.run_once() == ["washer@v2"]
    v2 = _active(manager)
    assert (v2.version, v2.calibration["method"], v2.calibration["source_version"]) == (2, STREAM_METHOD, 1)
    scores = np.array([s for _, s in manager.repository.recent_scores("washer", N)])
    wanted = np.median(scores) + 4 * 1.4826 * np.median(np.abs(scores - np.median(scores)))
    assert v2.calibration["threshold"] == pytest.approx(max(wanted, 0.7 * bank_time))  # bounded below
    _stream(manager, N, 2, start=N)
    assert calibrator.run_once() == []  # a stream calibration is not refined again
    manager.activate("washer", 1)  # the operator reverts
    _stream(manager, N, 1, start=2 * N)  # and v1 scores N frames again
    assert SelfCalibrator(lambda: manager, N).run_once() == []  # a new driver too: v1 was refined already
    assert [r.version for r in manager.list("washer")] == [1, 2]
    assert _active(manager).version == 1


def test_a_broken_version_is_logged_once_and_left_alone(manager, caplog):
    calibrator = SelfCalibrator(lambda: manager, N)
    _stream(manager, N, 1)
    bank_file_path(manager.settings.banks_dir, "washer", 1).write_bytes(b"not a bank")
    with caplog.at_level(logging.WARNING, logger="pipeline.self_calibration"):
        assert calibrator.run_once() == []
        assert calibrator.run_once() == []
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "washer@v1" in caplog.records[0].message
    assert [r.version for r in manager.list("washer")] == [1]


def test_an_unavailable_database_mid_round_is_retried_and_logged_once(manager, monkeypatch, caplog):
    from storage.exceptions import DatabaseUnavailableError

    calibrator = SelfCalibrator(lambda: manager, N)
    _stream(manager, N, 1)
    real = manager.repository.recent_scores

    def unavailable(*args, **kwargs):  # the fault: SQL answers the bank list, then goes away
        raise DatabaseUnavailableError("database is locked")

    monkeypatch.setattr(manager.repository, "recent_scores", unavailable)
    with caplog.at_level(logging.WARNING, logger="pipeline.self_calibration"):
        assert calibrator.run_once() == []
        assert calibrator.run_once() == []
    assert len(caplog.records) == 1
    assert "retried next round" in caplog.records[0].message
    monkeypatch.setattr(manager.repository, "recent_scores", real)
    assert calibrator.run_once() == ["washer@v2"]


def test_a_database_that_cannot_open_is_retried_next_round(manager):
    tries = []

    def make():
        tries.append(1)
        if len(tries) == 1:
            raise OSError("database not reachable yet")
        return manager

    calibrator = SelfCalibrator(make, N)
    _stream(manager, N, 1)
    assert calibrator.run_once() == []
    assert calibrator.run_once() == ["washer@v2"]


def test_the_supervisor_only_pokes_one_round_at_a_time(manager):
    import threading

    release, opened = threading.Event(), []

    def slow_manager():  # the first round waits here, as on a slow database
        opened.append(1)
        release.wait(10)
        return manager

    calibrator = SelfCalibrator(slow_manager, N)
    _stream(manager, N, 1)
    calibrator.poke()
    calibrator.poke()  # returns at once: a round is running
    release.set()
    calibrator._round.join(10)
    assert opened == [1]
    assert calibrator.calibrated == ["washer@v2"]


def test_off_and_bad_settings(tmp_path):
    assert self_calibrator_for(load_settings(data_dir=tmp_path, self_calibrate_after_frames=0)) is None
    assert self_calibrator_for(load_settings(data_dir=tmp_path)).after_frames == 500  # the default
    with pytest.raises(ConfigError, match="self_calibrate_after_frames=10.*at least 50"):
        load_settings(self_calibrate_after_frames=10)
    with pytest.raises(ValueError, match="got 3"):
        SelfCalibrator(lambda: None, 3)


def test_an_operator_override_stands_and_clears_back_to_the_automatic_threshold(manager):
    v1 = _active(manager)
    row = manager.set_sensitivity("washer", 0.61)
    assert (row.version, row.active) == (2, True)
    assert row.calibration == {**v1.calibration, "threshold": 0.61, "method": OVERRIDE_METHOD, "source_version": 1}
    assert MemoryBank.load(row.path).calibration.threshold == 0.61  # what the stream reads
    _stream(manager, N, 2)
    assert SelfCalibrator(lambda: manager, N).run_once() == []  # self-calibration leaves it alone
    again = manager.set_sensitivity("washer", 0.5)
    assert again.calibration["source_version"] == 1  # still the automatic version it replaced
    cleared = manager.set_sensitivity("washer", None)
    assert cleared.version == 4
    assert cleared.calibration == {**v1.calibration, "method": METHOD}
    with pytest.raises(ConfigError, match=r"'washer' has no sensitivity override to clear .*balanced-accuracy"):
        manager.set_sensitivity("washer", None)
    manager.activate("washer", 3)  # reversible like any version
    assert _active(manager).calibration["threshold"] == 0.5


@pytest.mark.parametrize("bad", [0.0, -0.2, 1.5, float("nan")])
def test_a_bad_sensitivity_is_named(manager, bad):
    with pytest.raises(ConfigError, match=f"must be in \\(0, 1\\].*got {bad}"):
        manager.set_sensitivity("washer", bad)
    with pytest.raises(ConfigError, match="'bracket' has no active bank"):
        manager.set_sensitivity("bracket", 0.5)
    assert [r.version for r in manager.list("washer")] == [1]


def test_the_cli_sets_clears_lists_and_names_a_bad_value(manager, monkeypatch, capsys):
    import json

    from linesight.cli import main

    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(manager.settings.data_dir))
    monkeypatch.setenv("LINESIGHT_DATABASE_URL", manager.settings.database_url)
    assert main(["bank", "sensitivity", "--class", "washer", "--threshold", "0.45"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["version"], shown["threshold"], shown["calibration"], shown["calibrated_from"]) == (
        2, 0.45, OVERRIDE_METHOD, 1)
    assert main(["bank", "sensitivity", "--class", "washer", "--threshold", "7"]) == 2
    assert "got 7.0" in capsys.readouterr().err
    assert main(["bank", "sensitivity", "--class", "washer", "--clear"]) == 0
    capsys.readouterr()
    assert main(["bank", "list", "--class", "washer"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "operator-override v1" in table[2]
    assert "balanced-accuracy-midpoint" in table[3]
    assert "*" in table[3]  # the cleared version is the active one
