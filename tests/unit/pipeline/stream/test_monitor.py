from pipeline.stream.monitor import LATENCY_BUCKETS_MS, StreamMonitor


def test_totals_survive_a_restarted_loop():
    monitor = StreamMonitor()
    monitor.report("ingest-0#1", {"polled": 10, "stored": 8, "dead_letter_reasons": {"oversize": 2}}, [5.0] * 8)
    monitor.report("ingest-0#1", {"polled": 10, "stored": 8, "dead_letter_reasons": {"oversize": 2}}, [],
                   running=False)
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


def test_faults_of_running_loops_and_restarts_per_role_are_visible():
    monitor = StreamMonitor()
    monitor.report("ingest-0#1", {"polled": 5, "infra_faults": 3, "fault_kinds": {"database": 3},
                                  "faults_active": {"database": "OperationalError: refused"}})
    monitor.report("ingest-1#2", {"faults_active": {"broker": "gone"}}, running=False)  # a stopped loop holds nothing
    monitor.count_restart("inference")
    monitor.count_restart("inference")
    snap = monitor.snapshot()
    assert snap["stream_state"] == "degraded"
    assert snap["faults_active"] == {"database": "OperationalError: refused"}
    assert snap["fault_kinds"] == {"database": 3}
    assert snap["actor_restarts"]["inference"] == 2
    assert snap["ingest_restarts"] == 0
    monitor.report("ingest-0#1", {"polled": 6, "faults_active": {}})
    assert monitor.snapshot()["stream_state"] == "ok"
