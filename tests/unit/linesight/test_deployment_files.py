"""docker-compose.yml cannot be run here (no Docker engine): check what can be checked statically."""

from pathlib import Path

import yaml

from linesight.settings import Settings

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
