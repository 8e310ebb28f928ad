"""In-stream cold start without services: the bank lookup routes a registered class to cold start, the
inference worker scores it against its recent frames, and the promoter turns the first N frames into
an active bank whose references are recorded and never a vetoed or defective frame."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from linesight.settings import load_settings
from pipeline.services.banks import BankManager
from pipeline.services.coldstart import NamedFrame
from pipeline.services.coldstart_stream import ColdStartConfig, ColdStartPromoter
from pipeline.stream.adapters import SqlBankLookup
from tests.unit.storage.helpers import make_record
from training.synthetic import SyntheticLine, normal_images

FIRST = 20  # seed 3, 10 % defects: frames 8 and 10 of the first 20 washer frames are defective


@pytest.fixture
def manager(tmp_path, two_threads):
    settings = load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}", engine="torch",
                             coldstart_classes="washer", coldstart_frames=FIRST, coldstart_shots=3)
    return BankManager(settings)


def _first_frames():
    line = SyntheticLine(("washer",), defect_rate=0.1, seed=3)
    frames = [line.next_frame() for _ in range(FIRST)]
    return [NamedFrame(f"w-{i:02d}", f.image) for i, f in enumerate(frames)], {
        f"w-{i:02d}" for i, f in enumerate(frames) if f.is_defective}


def _stored_cold_start_results(repository, names):
    repository.upsert_inspections([make_record(i, frame_id=name, product_class="washer", bank_version=0,
                                               score_source="cold-start", threshold_method="cold-start warm-up 0/8")
                                   for i, name in enumerate(names)])


def test_the_lookup_routes_registered_and_configured_classes_to_cold_start_until_a_bank_is_active(manager):
    repository = manager.repository
    repository.register_cold_start("gasket", frames=8, shots=2, registered_by="api")
    lookup = SqlBankLookup(repository, zero_shot_classes=(), cold_start_classes=("washer",))
    banks = lookup()
    assert {cls: (ref.version, ref.is_cold_start, ref.score_source) for cls, ref in banks.items()} == {
        "washer": (0, True, "cold-start"), "gasket": (0, True, "cold-start")}
    assert not banks["washer"].is_zero_shot
    manager.build("washer", normal_images("washer", 2), rotations=False)
    assert lookup()["washer"].score_source == "bank"  # an active bank wins
    repository.settle_cold_start("gasket", "cancelled")
    assert "gasket" not in lookup()


def test_the_inference_worker_scores_cold_start_frames_against_their_window_and_drops_it_for_a_bank():
    from model.factory import DetectorConfig
    from pipeline.stream.inference import InferenceWorker
    from pipeline.stream.messages import ZERO_SHOT_VERSION, BankRef, FrameTask

    worker = InferenceWorker(DetectorConfig(engine="torch"), cold_start=ColdStartConfig(window=6, frames=12,
                                                                                        min_decision_frames=4))
    frames, defective = _first_frames()
    now = datetime.now(UTC)
    ref = BankRef("washer", ZERO_SHOT_VERSION, "", cold_start=True)
    results = []
    for start in range(0, 12, 4):
        tasks = [FrameTask(f.name, "l", "c", "washer", now, now, f.image, b"", ref, "t", 0, start + i)
                 for i, f in enumerate(frames[start : start + 4])]
        results += worker.score(tasks)
    assert len(worker.windows["washer"]) == 5
    methods = [r.result.threshold_method for r in results]
    assert methods[0] == "cold-start median+3MAD of 4"  # 4 scores: the first decision
    assert methods[-1] == "cold-start median+3MAD of 12"
    flagged = {r.task.frame_id for r in results if r.result.is_anomalous}
    assert flagged == defective  # both defects (frames 8 and 10), and no normal frame
    later = FrameTask("w-99", "l", "c", "washer", now, now, frames[0].image, b"", BankRef("washer", 1, "/x"), "t", 0, 99)
    with pytest.raises(Exception, match="could not be loaded"):
        worker.score([later])  # the class has a bank now (a missing file here): its window is dropped first
    assert "washer" not in worker.windows


def test_the_promoter_waits_for_n_frames_then_builds_an_active_bank_of_normal_frames_and_records_them(manager):
    frames, defective = _first_frames()
    assert defective == {"w-08", "w-10"}  # the premise: 10 % of the first frames are defective
    repository = manager.repository
    reads = []

    def read(product_class, count, vetoed):
        reads.append((product_class, count, set(vetoed)))
        return [f for f in frames if f.name not in vetoed][:count]

    promoter = ColdStartPromoter(ColdStartConfig.from_settings(manager.settings), repository, manager, read)
    promoter.register_configured()
    assert [(c.product_class, c.state, c.registered_by) for c in repository.cold_starts()] == [
        ("washer", "scoring", "setting")]
    _stored_cold_start_results(repository, [f.name for f in frames[: FIRST - 1]])
    assert promoter.check_once() == []  # 19 of 20 frames scored: not yet
    assert reads == []
    _stored_cold_start_results(repository, [frames[-1].name])
    repository.set_feedback("w-05", "defect")  # an operator's veto before the promotion
    (result,) = promoter.check_once()
    assert reads == [("washer", FIRST, {"w-05"})]
    references = [name for name, _ in result.chosen]
    assert len(references) == 3
    assert not set(references) & (defective | {"w-05"})
    bank = repository.active_banks()["washer"]
    assert (bank.version, bank.reference_frames) == (1, tuple(references))
    entry = repository.get_cold_start("washer")
    assert (entry.state, entry.promoted_version) == ("promoted", 1)
    assert "w-" in entry.detail
    assert "vetoed ['w-05']" in entry.detail
    assert promoter.check_once() == []  # promoted once


def test_a_failed_read_is_kept_for_the_next_round_and_a_bank_built_by_hand_takes_over(manager):
    repository = manager.repository

    def read(product_class, count, vetoed):
        return []  # the topic holds nothing (yet)

    promoter = ColdStartPromoter(ColdStartConfig.from_settings(manager.settings), repository, manager, read)
    promoter.register_configured()
    _stored_cold_start_results(repository, [f"w-{i:02d}" for i in range(FIRST)])
    assert promoter.check_once() == []
    entry = repository.get_cold_start("washer")
    assert entry.state == "scoring"
    assert "promotion failed" in entry.detail
    assert "needs at least 6 frames, got 0" in entry.detail
    manager.build("washer", normal_images("washer", 2), rotations=False)
    assert promoter.check_once() == []
    entry = repository.get_cold_start("washer")
    assert (entry.state, entry.promoted_version) == ("promoted", 1)


def test_bank_auto_stream_registers_and_bank_list_shows_it(tmp_path, monkeypatch, capsys):
    from linesight.cli import main

    monkeypatch.setenv("LINESIGHT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LINESIGHT_DATABASE_URL", f"sqlite:///{tmp_path / 'linesight.db'}")
    assert main(["bank", "auto", "--class", "gasket", "--stream", "--frames", "16", "--shots", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["product_class"], out["state"], out["frames"], out["shots"]) == ("gasket", "scoring", 16, 2)
    assert main(["bank", "list"]) == 0
    assert "cold start gasket: scoring, 0 of 16 frames scored, 2 shots" in capsys.readouterr().out
    assert main(["bank", "auto", "--class", "gasket", "--stream", "--frames", "3"]) == 2
    assert "--frames 3 must be at least max(4, 2 * --shots) = 8" in capsys.readouterr().err
