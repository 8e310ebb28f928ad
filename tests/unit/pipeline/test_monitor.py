from pipeline.monitor import LATENCY_BUCKETS_MS, StreamMonitor


def test_totals_survive_a_restarted_loop():
    monitor = StreamMonitor()
    monitor.report("ingest-0#1", {"polled": 10, "stored": 8, "dead_letter_reasons": {"oversize": 2}}, [5.0] * 8)
    monitor.retire("ingest-0#1")
    monitor.count_restart()
    monitor.report("ingest-0#2", {"polled": 4, "stored": 4, "bank_versions": {"brick@v2": 4}}, [60.0] * 4)
    snap = monitor.snapshot()
    assert snap["frames_in"] == 14
    assert snap["frames_stored"] == 12
    assert snap["dead_lettered"] == {"oversize": 2}
    assert snap["bank_versions"] == {"brick@v2": 4}
    assert snap["ingest_running"] == 1
    assert snap["ingest_restarts"] == 1


def test_latency_histogram_is_cumulative():
    monitor = StreamMonitor()
    monitor.report("ingest-0#1", {}, [1.0, 30.0, 30.0, 99999.0])
    buckets = monitor.snapshot()["latency_ms_buckets"]
    assert list(buckets) == [*map(str, LATENCY_BUCKETS_MS), "+Inf"]
    assert buckets["10"] == 1
    assert buckets["50"] == 3
    assert buckets[str(LATENCY_BUCKETS_MS[-1])] == 3
    assert buckets["+Inf"] == 4
    assert monitor.snapshot()["latency_ms_sum"] == 1.0 + 30.0 + 30.0 + 99999.0


def test_verdict_counters_come_from_the_verdict_source():
    monitor = StreamMonitor()
    monitor.report("verdicts", {"verdict_backlog": 3, "verdict_skipped": 1, "verdicts_written": 7})
    snap = monitor.snapshot()
    assert (snap["verdict_backlog"], snap["verdict_skipped"], snap["verdicts_written"]) == (3, 1, 7)
    assert snap["frames_in"] == 0
