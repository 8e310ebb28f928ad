"""docker-compose.yml and the Kubernetes manifests cannot be run here (no Docker engine, no cluster): check
what can be checked statically: YAML parses, every LINESIGHT_* variable is a setting and the values form a
valid configuration, every command line parses with the real CLI parser, healthchecks exist, one stream."""

import argparse
import re
from pathlib import Path

import pytest
import yaml

from linesight.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_linesight_variable_is_a_real_setting():
    fields = {f"LINESIGHT_{name.upper()}" for name in Settings.model_fields}
    for name, service in _compose()["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("LINESIGHT_"):
                assert variable in fields, f"{name}: {variable} is not a setting in linesight/settings.py"


def test_production_layout_has_the_parts():
    services = _compose()["services"]
    assert {"kafka", "postgres", "ray-head", "ray-worker", "linesight-stream", "linesight-api"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    env = services["linesight-stream"]["environment"]
    assert env["LINESIGHT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["LINESIGHT_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_compose_commands_are_real_subcommands():
    from linesight.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if service.get("image", "").startswith("linesight") and command and "entrypoint" not in service:
            assert command[0] in commands, f"{name}: unknown linesight command {command[0]!r}"


# --- a deployment that runs -------------------------------------------------------------------
K8S = ROOT / "deploy" / "kubernetes"
SETTING_NAMES = {f"LINESIGHT_{name.upper()}" for name in Settings.model_fields}


def _k8s() -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / "linesight.yaml").read_text()) if doc]


def _parse_command(argv: list[str]) -> argparse.Namespace:
    """Parse a container's linesight arguments with the real parser (unknown flags fail)."""
    from linesight.cli import build_parser

    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"not a valid linesight command line: {argv}")


def _linesight_services() -> dict[str, dict]:
    return {name: s for name, s in _compose()["services"].items()
            if s.get("image", "").startswith("linesight") and "entrypoint" not in s}


def _resolve(value: str) -> str:
    """${VAR:-default} -> default, ${VAR:?message} -> a placeholder, as compose does with VAR unset."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "placeholder", value)


def test_compose_command_lines_parse_with_the_real_parser():
    for service in _linesight_services().values():
        if service.get("command"):
            _parse_command(service["command"])


def test_every_long_running_service_has_a_healthcheck():
    for name, service in _compose()["services"].items():
        check = service.get("healthcheck")
        assert check is not None, f"{name} has no healthcheck"
        if "tools" in service.get("profiles", []):
            continue  # one-shot jobs: exit code is health (an explicit `disable: true`)
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {check['test']!r}"


def test_only_one_stream_runs_and_the_api_does_not_join_it():
    services = _linesight_services()
    streams = [name for name, s in services.items() if s.get("command", [None])[0] == "run"]
    assert streams == ["linesight-stream"]
    api = _parse_command(services["linesight-api"]["command"])
    assert api.command == "serve"
    assert api.no_stream, "linesight-api must run `serve --no-stream`: a second stream would join the consumer group"


def test_the_serve_proxy_port_is_published_on_a_ray_node():
    services = _compose()["services"]
    assert "ports" not in services["linesight-api"], "Serve's proxy does not run in the driver container"
    assert "8000:8000" in services["ray-head"]["ports"]
    assert "--host" in services["linesight-api"]["command"]
    assert services["linesight-api"]["command"][services["linesight-api"]["command"].index("--host") + 1] == "0.0.0.0"


def test_stream_healthcheck_reads_the_heartbeat_the_stream_writes():
    stream = _compose()["services"]["linesight-stream"]
    args = _parse_command(stream["command"])
    assert str(args.health_file) in " ".join(stream["healthcheck"]["test"])


def test_kafka_has_internal_and_external_listeners():
    kafka = _compose()["services"]["kafka"]
    env = kafka["environment"]
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in _resolve(env["KAFKA_ADVERTISED_LISTENERS"]).split(","))
    assert {"INTERNAL", "EXTERNAL"} <= set(listeners) & set(advertised)
    assert advertised["INTERNAL"] == "kafka:9092"
    assert advertised["EXTERNAL"].endswith(":9094")
    assert "9094:9094" in kafka["ports"]
    assert _compose()["services"]["linesight-stream"]["environment"]["LINESIGHT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_commented_settings_in_compose_are_real_too():
    text = (ROOT / "docker-compose.yml").read_text()
    commented = set(re.findall(r"#\s*(LINESIGHT_[A-Z_]+):", text))
    assert {"LINESIGHT_KAFKA_SECURITY_PROTOCOL", "LINESIGHT_KAFKA_SASL_MECHANISM"} <= commented
    assert commented <= SETTING_NAMES, f"not settings: {sorted(commented - SETTING_NAMES)}"


def test_compose_environment_is_a_valid_configuration():
    env = {k: _resolve(v) for k, v in _compose()["x-linesight-env"].items() if k in SETTING_NAMES}
    settings = load_settings(**{k.removeprefix("LINESIGHT_").lower(): v for k, v in env.items()})
    assert settings.kafka_bootstrap_servers == "kafka:9092"


def test_dockerignore_keeps_the_build_context_small():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "linesight-data", ".git", "**/__pycache__"} <= ignored


def test_dockerfile_has_a_cuda_variant():
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG TORCH_INDEX=cpu" in text
    assert "https://download.pytorch.org/whl/${TORCH_INDEX}" in text
    assert "--build-arg TORCH_INDEX=cu" in text  # documented


# --- Kubernetes (KubeRay) ---------------------------------------------------------------------------------
def _by_kind(kind: str) -> list[dict]:
    return [doc for doc in _k8s() if doc["kind"] == kind]


def _containers(doc: dict) -> list[dict]:
    if doc["kind"] == "RayService":
        cluster = doc["spec"]["rayClusterConfig"]
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        return [c for group in groups for c in group["template"]["spec"]["containers"]]
    return list(doc["spec"]["template"]["spec"]["containers"])


def test_k8s_manifest_has_the_parts():
    kinds = {doc["kind"] for doc in _k8s()}
    assert {"ConfigMap", "RayService", "Deployment", "Job", "PersistentVolumeClaim"} <= kinds
    for doc in _k8s():
        assert doc["apiVersion"]
        assert doc["metadata"]["name"]
    (service,) = _by_kind("RayService")
    assert service["apiVersion"] == "ray.io/v1"


def test_k8s_variables_are_real_settings_and_a_valid_configuration(tmp_path):
    (config_map,) = _by_kind("ConfigMap")
    names = {n for n in config_map["data"] if n.startswith("LINESIGHT_")}
    for doc in _k8s():
        if doc["kind"] in ("RayService", "Deployment", "Job"):
            names |= {e["name"] for c in _containers(doc) for e in c.get("env", []) if e["name"].startswith("LINESIGHT_")}
    assert names <= SETTING_NAMES, f"not settings: {sorted(names - SETTING_NAMES)}"
    ca = tmp_path / "ca.crt"
    ca.write_text("pem")
    values = {k.removeprefix("LINESIGHT_").lower(): v for k, v in config_map["data"].items() if k in SETTING_NAMES}
    values |= {"kafka_ssl_cafile": str(ca), "kafka_sasl_password": "from-the-secret", "api_token": "t",
               "database_url": "postgresql+psycopg://u@db/linesight", "data_dir": str(tmp_path)}
    settings = load_settings(**values)
    assert settings.kafka_security["security_protocol"] == "SASL_SSL"


def test_k8s_commands_are_real_and_one_stream_driver_runs():
    streams = []
    for doc in _by_kind("Deployment") + _by_kind("Job"):
        for container in _containers(doc):
            args = _parse_command(container["args"])
            assert args.command != "serve" or args.no_stream, f"{doc['metadata']['name']} runs a second stream"
            if args.command == "run":
                streams.append(doc)
    assert len(streams) == 1
    (stream,) = streams
    assert stream["spec"]["replicas"] == 1
    assert stream["spec"]["strategy"]["type"] == "Recreate"
    probe = " ".join(_containers(stream)[0]["livenessProbe"]["exec"]["command"])
    assert str(_parse_command(_containers(stream)[0]["args"]).health_file) in probe


def test_k8s_ray_address_is_the_rayservice_head():
    (config_map,) = _by_kind("ConfigMap")
    (service,) = _by_kind("RayService")
    assert config_map["data"]["LINESIGHT_RAY_ADDRESS"] == f"{service['metadata']['name']}-head-svc:6379"


def test_k8s_gpu_workers_request_the_gpu_they_announce():
    (service,) = _by_kind("RayService")
    groups = {g["groupName"]: g for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    gpu = groups["gpu"]
    container = gpu["template"]["spec"]["containers"][0]
    assert gpu["rayStartParams"]["num-gpus"] == container["resources"]["limits"]["nvidia.com/gpu"]
    assert container["image"].endswith(":cuda")


def test_serve_config_imports_a_real_builder_and_matches_the_rayservice():
    import importlib

    standalone = yaml.safe_load((K8S / "serve-config.yaml").read_text())
    (service,) = _by_kind("RayService")
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == standalone
    for app in standalone["applications"]:
        module, _, attribute = app["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), attribute))
        assert set(app.get("args") or {}) <= set(Settings.model_fields)
    assert standalone["http_options"]["host"] == "0.0.0.0"


def test_run_writes_the_heartbeat_the_probes_read(tmp_path):
    import json
    import time

    from linesight.commands.run import _heartbeat

    path = tmp_path / "stream.json"
    _heartbeat(path, {"stored": 3, "dead_lettered": 1, "latency": [1.0]})
    beat = json.loads(path.read_text())
    assert beat["stored"] == 3
    assert "latency" not in beat
    assert time.time() - beat["at"] < 3600


def test_deployment_doc_covers_the_deployment_settings():
    text = (ROOT / "docs" / "deployment.md").read_text()
    ours = [name for name in Settings.model_fields if name.startswith(("kafka_s", "kafka_r")) or name in (
        "frames_retention_ms", "alerts_retention_ms", "dead_letter_retention_ms", "device", "inference_gpus",
        "placement_strategy")]
    missing = [f"LINESIGHT_{name.upper()}" for name in ours if f"LINESIGHT_{name.upper()}" not in text]
    assert not missing, f"docs/deployment.md does not mention {missing}"


def _ingest_loops(argv: list[str]) -> int:
    return _parse_command(argv).ingest_loops


def test_compose_workers_hold_the_stream_actors():
    from pipeline.stream.job import INGEST_CPUS, SINK_CPUS

    services = _compose()["services"]
    env = _compose()["x-linesight-env"]
    worker = services["ray-worker"]
    cpus = int(next(a for a in worker["command"] if a.startswith("--num-cpus=")).split("=")[1])
    workers = worker["deploy"]["replicas"]
    actors, per_actor = int(env["LINESIGHT_INFERENCE_ACTORS"]), float(env["LINESIGHT_INFERENCE_CPUS"])
    loops = _ingest_loops(services["linesight-stream"]["command"])
    assert actors * per_actor + loops * (INGEST_CPUS + SINK_CPUS) <= workers * cpus
    assert per_actor <= cpus  # one actor fits a worker
    if env["LINESIGHT_PLACEMENT_STRATEGY"] == "STRICT_SPREAD":
        head_cpus = int(next(a for a in services["ray-head"]["command"] if a.startswith("--num-cpus=")).split("=")[1])
        nodes_that_fit = workers + (1 if per_actor <= head_cpus else 0)
        assert actors <= nodes_that_fit, "STRICT_SPREAD needs a node per inference actor"
    assert loops <= int(env["LINESIGHT_FRAMES_PARTITIONS"])


def test_k8s_workers_hold_the_stream_actors():
    from pipeline.stream.job import INGEST_CPUS, SINK_CPUS

    (config_map,) = _by_kind("ConfigMap")
    (service,) = _by_kind("RayService")
    data = config_map["data"]
    groups = {g["groupName"]: g for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    cpu = groups["cpu"]
    worker_cpus = cpu["replicas"] * int(cpu["rayStartParams"]["num-cpus"])
    (stream,) = [d for d in _by_kind("Deployment") if d["metadata"]["name"] == "linesight-stream"]
    loops = _ingest_loops(_containers(stream)[0]["args"])
    need = int(data["LINESIGHT_INFERENCE_ACTORS"]) * float(data["LINESIGHT_INFERENCE_CPUS"])
    assert need + loops * (INGEST_CPUS + SINK_CPUS) <= worker_cpus  # without the (0-replica) GPU group
    assert loops <= int(data["LINESIGHT_FRAMES_PARTITIONS"])
    requested = _containers(service)[1]["resources"]["requests"]["cpu"]
    assert int(requested) >= int(cpu["rayStartParams"]["num-cpus"])  # the pod has the CPUs Ray announces
