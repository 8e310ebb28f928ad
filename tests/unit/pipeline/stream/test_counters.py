"""One typed counters object: merged by the ingest loops' total (job), read by the monitor and /metrics."""

from __future__ import annotations

from linesight.settings import load_settings
from pipeline.stream.counters import SNAPSHOT_NAMES, StreamCounters
from pipeline.stream.job import _aggregate
from pipeline.stream.ports import IngestConfig


def test_merge_adds_every_field_and_keeps_the_inputs():
    a = StreamCounters(polled=3, stored=2, bank_versions={"brick@v1": 2})
    a.count_dead_letter("oversize")
    a.count_fault("database")
    b = StreamCounters(polled=1, stored=1, bank_versions={"brick@v1": 1, "brick@v2": 1})
    total = a.merge(b)
    assert (total.polled, total.stored, total.dead_lettered, total.infra_faults) == (4, 3, 1, 1)
    assert total.bank_versions == {"brick@v1": 3, "brick@v2": 1}
    assert a.bank_versions == {"brick@v1": 2}  # merge returns a new object
    assert StreamCounters.from_dict(total.as_dict()) == total


def test_the_job_total_merges_loops_and_keeps_the_names_run_and_demo_read():
    loop_a = {**StreamCounters(polled=5, stored=4, redelivered=1, alerts_sent=2).as_dict(), "latencies_ms": [3.0],
              "running": True, "faults_active": {"database": "down"}, "error": None}
    loop_b = {**StreamCounters(polled=2, stored=2, dead_lettered=1, dead_letter_reasons={"oversize": 1}).as_dict(),
              "latencies_ms": [5.0], "running": False, "faults_active": {"broker": "old"}, "error": "boom"}
    total = _aggregate([loop_a, loop_b], {"ingest": 1, "inference": 2, "sink": 0, "verdicts": 0})
    assert (total["polled"], total["stored"], total["redelivered"], total["alerts_sent"]) == (7, 6, 1, 2)
    assert total["dead_letter_reasons"] == {"oversize": 1}
    assert total["latencies_ms"] == [3.0, 5.0]
    assert total["faults_active"] == {"database": "down"}  # a stopped loop holds nothing
    assert total["running"] == 1
    assert total["errors"] == ["boom"]
    assert total["restarts"] == 3
    assert total["restarts_by_role"]["inference"] == 2


def test_every_snapshot_name_is_a_counter():
    fields = set(StreamCounters().as_dict())
    assert set(SNAPSHOT_NAMES.values()) <= fields


def test_ingest_config_comes_from_settings_and_backs_off_exponentially():
    config = IngestConfig.from_settings(load_settings(max_batch_size=8, fault_retry_initial_s=0.5, fault_retry_max_s=3))
    assert config.max_batch_size == 8
    assert [config.backoff_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
