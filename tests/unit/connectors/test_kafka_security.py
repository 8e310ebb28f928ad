"""TLS/SASL settings -> kafka-python keyword arguments, and every Kafka client in the code gets them."""

import ast
from pathlib import Path

import pytest

from connectors.exceptions import ConnectorError
from connectors.kafka import consumer_config, producer_config, security_config
from linesight.errors import ConfigError
from linesight.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]


def test_plaintext_is_the_default():
    assert security_config() == {"security_protocol": "PLAINTEXT"}
    assert load_settings().kafka_security == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_maps_to_kafka_python_names(tmp_path, mechanism):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = security_config(
        "SASL_SSL", sasl_mechanism=mechanism.lower(), sasl_username="inspector", sasl_password="s3cret",
        ssl_cafile=ca, ssl_check_hostname=False,
    )
    assert config == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "inspector",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": str(ca),
        "ssl_check_hostname": False,
    }


def test_mutual_tls_passes_cert_key_and_key_password(tmp_path):
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("pem")
    config = security_config(
        "SSL", ssl_cafile=files["ca"], ssl_certfile=files["cert"], ssl_keyfile=files["key"], ssl_password="kp"
    )
    assert config["ssl_certfile"] == str(files["cert"])
    assert config["ssl_keyfile"] == str(files["key"])
    assert config["ssl_password"] == "kp"
    assert config["ssl_check_hostname"] is True
    assert "sasl_mechanism" not in config


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"security_protocol": "SASL_SSL"}, "LINESIGHT_KAFKA_SASL_MECHANISM"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
         "LINESIGHT_KAFKA_SASL_PASSWORD"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
          "sasl_password": "p"}, "'GSSAPI'"),
        ({"security_protocol": "PLAINTEXT", "sasl_mechanism": "PLAIN"}, "LINESIGHT_KAFKA_SASL_MECHANISM"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u",
          "sasl_password": "p", "ssl_cafile": "/ca.pem"}, "LINESIGHT_KAFKA_SSL_CAFILE"),
        ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "'/no/such/ca.pem'"),
        ({"security_protocol": "SSL", "ssl_keyfile": "/k.pem", "check_files": False}, "LINESIGHT_KAFKA_SSL_CERTFILE"),
        ({"security_protocol": "TLS"}, "'TLS'"),
    ],
)
def test_inconsistent_security_names_the_setting(kwargs, named):
    with pytest.raises(ConnectorError, match=named.replace("(", r"\(")):
        security_config(**kwargs)


def test_settings_reject_sasl_without_credentials_naming_the_field():
    with pytest.raises(ConfigError, match="LINESIGHT_KAFKA_SASL_USERNAME") as info:
        load_settings(kafka_bootstrap_servers="kafka:9093", kafka_security_protocol="SASL_SSL",
                      kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_password="hunter2")
    assert "hunter2" not in str(info.value)  # the whole-model error must not echo secrets


def test_settings_reject_security_on_the_embedded_broker():
    with pytest.raises(ConfigError, match="kafka_bootstrap_servers"):
        load_settings(kafka_security_protocol="SSL")


def test_settings_mask_a_bad_secret_value():
    with pytest.raises(ConfigError, match=r"kafka_sasl_password='\*+'"):
        load_settings(kafka_sasl_password=12345)


def test_settings_build_the_client_options_with_the_secret_in_clear():
    settings = load_settings(kafka_bootstrap_servers="kafka:9093", kafka_security_protocol="SASL_PLAINTEXT",
                             kafka_sasl_mechanism="PLAIN", kafka_sasl_username="u", kafka_sasl_password="p")
    assert "p" not in repr(settings.kafka_sasl_password)
    security = settings.kafka_security
    assert security["sasl_plain_password"] == "p"
    assert producer_config("k:1", max_request_size=2048, security=security)["sasl_mechanism"] == "PLAIN"
    assert consumer_config("k:1", group_id="g", security=security)["security_protocol"] == "SASL_PLAINTEXT"


def test_topic_configs_follow_the_retention_settings():
    settings = load_settings(frames_retention_ms=259_200_000, dead_letter_retention_ms=604_800_000)
    assert settings.topic_configs == {
        "linesight.frames": {"retention.ms": 259_200_000},
        "linesight.dead-letter": {"retention.ms": 604_800_000},
    }
    assert load_settings().topic_configs == {}


# Clients that exist only against the embedded (PLAINTEXT) broker: its readiness probe and the benchmark's
# private broker. Everything else talks to the configured Kafka and must carry the security options.
_EMBEDDED_ONLY = {"connectors/tansu.py", "linesight/bench.py"}
_CLIENT_CALLS = {
    "KafkaProducer", "KafkaConsumer", "KafkaAdminClient", "make_producer", "make_consumer", "make_admin",
    "ensure_topics", "KafkaFrameSource", "AlertTail",
}


def _calls_without_security(path: Path) -> list[str]:
    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name not in _CLIENT_CALLS:
            continue
        keywords = {k.arg for k in node.keywords}
        if "security" in keywords or None in keywords:  # security=... or **options forwarding
            continue
        missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}(...)")
    return missing


def test_every_kafka_client_in_the_code_gets_the_security_options():
    sources = [p for folder in ("connectors", "linesight", "pipeline", "storage", "model", "training")
               for p in (ROOT / folder).rglob("*.py")]
    missing = [
        call for path in sources if str(path.relative_to(ROOT)) not in _EMBEDDED_ONLY
        for call in _calls_without_security(path)
    ]
    assert not missing, "Kafka clients created without security=settings.kafka_security:\n" + "\n".join(missing)
