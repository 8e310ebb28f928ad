"""deploy/monitoring cannot run here (no Prometheus, no Grafana): check its files against what the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "monitoring"
METRIC = re.compile(r"\blinesight_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """Every sample name a scrape of a busy stream and API returns (counters with _total, histogram parts)."""
    from linesight.api.metrics import build_registry, request_counter
    from pipeline.stream.monitor import StreamMonitor
    from tests.helpers import open_repository
    from tests.unit.storage.helpers import make_record

    monitor = StreamMonitor()
    monitor.report("ingest-0#1", {"polled": 3, "stored": 3, "redelivered": 1, "alerts_sent": 1, "bank_swaps": 1,
                                  "dead_letter_reasons": {"oversize": 1}, "bank_versions": {"brick@v1": 3}},
                   [12.0, 40.0, 700.0])
    monitor.report("verdicts", {"verdict_backlog": 1, "verdict_skipped": 1, "verdicts_written": 1,
                                "verdicts_rejected": 1})
    monitor.report("webhook", {"webhook_delivered": 1, "webhook_failed": 1, "webhook_dropped": 1})
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'm.db'}"
    repositories = open_repository(url)
    repository = next(repositories)
    repository.upsert_inspections([make_record(i) for i in range(4)])
    repository.mark_alerted(["f-0"])
    registry = build_registry(monitor.snapshot, lambda: repository)
    request_counter(registry).labels("GET", "/metrics", "200").inc()
    text = generate_latest(registry).decode()
    names = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    next(repositories, None)
    return names


def test_the_exporter_names_what_operators_need(exported: set[str]) -> None:
    for name in ("linesight_inspections_total", "linesight_inspections_flagged_total", "linesight_alerts_total",
                 "linesight_frame_latency_seconds_bucket", "linesight_dead_lettered_total",
                 "linesight_llm_verdict_backlog", "linesight_stream_up"):
        assert name in exported, name
    assert not any(name.endswith("_ms") or "_ms_" in name for name in exported)  # base units only


def _rules() -> list[dict]:
    document = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_parse_and_use_exported_metrics(exported: set[str]) -> None:
    rules = _rules()
    names = {rule["alert"] for rule in rules}
    for needed in ("LinesightNoFrames", "LinesightDefectShareSpike", "LinesightDeadLetters", "LinesightLLMBacklog"):
        assert needed in names
    for rule in rules:
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        used = set(METRIC.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= exported, f"{rule['alert']} uses {sorted(used - exported)}, not exported"


def test_grafana_dashboard_parses_and_queries_exported_metrics(exported: set[str]) -> None:
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "linesight.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [variable["definition"] for variable in dashboard["templating"]["list"]]
    assert len(dashboard["panels"]) >= 10
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for expr in expressions:
        used = set(METRIC.findall(expr))
        assert used, expr
        assert used <= exported, f"{expr!r} uses {sorted(used - exported)}, not exported"
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for word in ("by line", "defect share", "dead letters", "latency", "llm"):
        assert word in titles, word


def test_prometheus_scrapes_the_ports_compose_opens() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"linesight-stream:9108", "linesight-api:8000"}
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    stream = services["linesight-stream"]["command"]
    assert stream[stream.index("--metrics-port") + 1] == "9108"
    assert "8000" in services["linesight-api"]["command"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]
