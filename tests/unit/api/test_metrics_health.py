"""/metrics from a real StreamMonitor snapshot and SQL counts; /healthz part by part."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from pipeline.stream.monitor import StreamMonitor
from tests.unit.api.helpers import TOKEN, seed


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def monitor() -> StreamMonitor:
    monitor = StreamMonitor()
    monitor.report("ingest-0#1", {"polled": 12, "stored": 9, "redelivered": 1, "alerts_sent": 3, "bank_swaps": 1,
                                  "dead_letter_reasons": {"oversize": 2, "not_an_image": 1},
                                  "bank_versions": {"brick@v1": 5, "brick@v2": 4}}, [8.0, 30.0, 30.0, 700.0])
    monitor.report("verdicts", {"verdict_backlog": 4, "verdict_skipped": 2, "verdicts_written": 5})
    monitor.count_restart()
    return monitor


def _client(settings, repository, snapshot, **kwargs) -> TestClient:
    from linesight.api.app import create_app

    return TestClient(create_app(settings, token=TOKEN, repository=repository, stream_snapshot=snapshot, **kwargs))


def test_metrics_export_the_stream_snapshot_and_sql_counts(settings, repository, monitor):
    seed(repository, 9)
    repository.mark_alerted(["f-0", "f-3"])
    with _client(settings, repository, monitor.snapshot) as client:
        client.get("/api/inspections")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples[("linesight_stream_up", ())] == 1
    assert samples[("linesight_frames_in_total", ())] == 12
    assert samples[("linesight_frames_out_total", ())] == 9
    assert samples[("linesight_dead_lettered_total", (("reason", "oversize"),))] == 2
    assert samples[("linesight_bank_frames_total", (("bank", "brick@v2"),))] == 4
    assert samples[("linesight_bank_swaps_total", ())] == 1
    assert samples[("linesight_ingest_restarts_total", ())] == 1
    assert samples[("linesight_llm_verdict_backlog", ())] == 4
    assert samples[("linesight_llm_verdicts_skipped_total", ())] == 2
    assert samples[("linesight_frame_latency_seconds_bucket", (("le", "0.01"),))] == 1
    assert samples[("linesight_frame_latency_seconds_bucket", (("le", "0.05"),))] == 3
    assert samples[("linesight_frame_latency_seconds_bucket", (("le", "+Inf"),))] == 4
    assert samples[("linesight_frame_latency_seconds_count", ())] == 4
    assert samples[("linesight_frame_latency_seconds_sum", ())] == pytest.approx(0.768)
    brick, washer = (("line", "line-0"), ("product_class", "brick")), (("line", "line-1"), ("product_class", "washer"))
    assert samples[("linesight_inspections_total", brick)] == 5  # rows 0, 2, 4, 6, 8
    assert samples[("linesight_inspections_total", washer)] == 4
    assert samples[("linesight_inspections_flagged_total", brick)] == 2  # rows 0 and 6
    assert samples[("linesight_inspections_flagged_total", washer)] == 1
    assert samples[("linesight_alerts_total", brick)] == 1
    assert samples[("linesight_alerts_total", washer)] == 1
    key = ("linesight_api_requests_total", (("method", "GET"), ("route", "/api/inspections"), ("status", "200")))
    assert samples[key] == 1


def test_metrics_without_a_stream_say_so(settings, repository):
    with _client(settings, repository, lambda: None) as client:
        samples = _samples(client.get("/metrics").text)
    assert samples[("linesight_stream_up", ())] == 0
    assert ("linesight_frames_in_total", ()) not in samples


def test_health_is_200_when_every_used_part_is_up(settings, repository, monitor):
    with _client(settings, repository, monitor.snapshot, expect_stream=True) as client:
        response = client.get("/healthz")
    assert response.status_code == 200, response.text
    parts = response.json()["parts"]
    assert parts["database"]["status"] == "ok"
    assert parts["stream"]["status"] == "ok"
    assert parts["stream"]["frames_in"] == 12
    assert parts["broker"]["status"] == "skipped"


def test_health_is_503_naming_the_parts_that_are_down(settings, repository):
    from connectors.tansu import free_port

    dead_broker = f"127.0.0.1:{free_port()}"
    with _client(settings, repository, lambda: None, expect_stream=True, bootstrap_servers=dead_broker) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["parts"]["broker"]["status"] == "down"
    assert dead_broker in body["parts"]["broker"]["servers"]
    assert body["parts"]["stream"] == {"status": "down", "detail": "the stream monitor actor does not answer"}
    assert body["parts"]["database"]["status"] == "ok"


def test_a_stopped_stream_is_down(settings, repository, monitor):
    monitor.report("ingest-0#1", {"polled": 12, "stored": 9}, running=False)  # a loop's last report on stopping
    with _client(settings, repository, monitor.snapshot, expect_stream=True) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["parts"]["stream"]["detail"] == "no ingest loop is running"


def test_an_unreachable_database_is_down(settings, repository):
    from linesight.api.app import create_app

    broken = settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    with TestClient(create_app(broken, token=TOKEN, stream_snapshot=lambda: None)) as client:
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["parts"]["database"]["status"] == "down"
        listing = client.get("/api/inspections")
    assert listing.status_code == 503
    assert "127.0.0.1:1" in listing.json()["error"]


def test_sql_counters_only_go_up_across_a_purge(settings, repository):
    import sqlalchemy as sa

    from storage.models import Inspection

    seed(repository, 6)
    key = ("linesight_inspections_total", (("line", "line-0"), ("product_class", "brick")))
    with _client(settings, repository, lambda: None) as client:
        assert _samples(client.get("/metrics").text)[key] == 3
        with repository.database.transaction(write=True) as connection:  # what `linesight purge` does
            connection.execute(sa.delete(Inspection.__table__))
        assert _samples(client.get("/metrics").text)[key] == 3
        from tests.unit.api.helpers import make_record

        repository.upsert_inspections([make_record(i) for i in (10, 12)])
        assert _samples(client.get("/metrics").text)[key] == 5


def test_run_serves_metrics_over_http(repository, monitor):
    import socket
    import urllib.request

    from linesight.api.metrics import build_registry, serve_metrics
    from linesight.errors import ConfigError

    seed(repository, 3)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_metrics(build_registry(monitor.snapshot, lambda: repository), port, host="127.0.0.1")
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        samples = _samples(text)
        assert samples[("linesight_stream_up", ())] == 1
        assert samples[("linesight_inspections_total", (("line", "line-1"), ("product_class", "washer")))] == 1
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            serve_metrics(build_registry(lambda: None), port, host="127.0.0.1")
    finally:
        server.shutdown()

def test_a_stream_holding_on_an_infrastructure_fault_is_degraded_and_counted(settings, repository, monitor):
    monitor.report("ingest-0#1", {"polled": 12, "infra_faults": 4, "fault_kinds": {"database": 4},
                                  "faults_active": {"database": "OperationalError: connection refused"}})
    monitor.count_restart("inference")
    with _client(settings, repository, monitor.snapshot, expect_stream=True) as client:
        health = client.get("/healthz")
        samples = _samples(client.get("/metrics").text)
    assert health.status_code == 503
    stream = health.json()["parts"]["stream"]
    assert stream["status"] == "degraded"
    assert "database: OperationalError: connection refused" in stream["detail"]
    assert samples[("linesight_infra_faults_total", (("kind", "database"),))] == 4
    assert samples[("linesight_stream_fault_active", (("kind", "database"),))] == 1
    assert samples[("linesight_actor_restarts_total", (("actor", "inference"),))] == 1
    assert samples[("linesight_ingest_restarts_total", ())] == 1
