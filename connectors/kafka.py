"""Kafka client factories (kafka-python) with the settings measured on the development host (docs/architecture.md).

- producer: ``linger_ms=5``, ``batch_size=1 MiB``, ``acks="all"``; ``max_request_size`` is required so an
  oversize frame fails in the client, as it would against a production broker (Tansu enforces no limit).
- consumer: a group with manual commits (``enable_auto_commit=False``), ``auto_offset_reset="earliest"``
  (``"latest"`` is wrong on Tansu after batched produces), ``session_timeout_ms=6000`` with
  ``heartbeat_interval_ms=1000`` (a group join takes about half the session timeout).

Security: every factory takes ``security=`` (the dict :func:`security_config` returns: TLS and SASL
PLAIN/SCRAM options in kafka-python's names). Every Kafka client linesight creates goes through these
factories with it, so one set of ``LINESIGHT_KAFKA_*`` settings reaches producers, consumers and admin
clients alike (``Settings.kafka_security`` builds it). ``None`` means PLAINTEXT (the embedded broker).

Client construction errors become :class:`ConnectorError` naming the servers.

>>> producer = make_producer("127.0.0.1:9092", max_request_size=1_048_576)  # doctest: +SKIP
>>> ensure_topics("127.0.0.1:9092", {"linesight.frames": 4})  # doctest: +SKIP
>>> security_config("SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p")["sasl_mechanism"]
'SCRAM-SHA-512'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from connectors.exceptions import ConnectorError

__all__ = [
    "DEFAULT_BATCH_SIZE_BYTES",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "consumer_config",
    "ensure_topics",
    "make_admin",
    "make_consumer",
    "make_producer",
    "producer_config",
    "security_config",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE_BYTES = 1 << 20  # 1 MiB: ~4500 frames/s of 55 KB with linger_ms=5 (measured facts in docs/architecture.md)
_TOPIC_ALREADY_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _name(parameter: str) -> str:
    """A parameter with the setting that feeds it, for error messages."""
    return f"{parameter} (LINESIGHT_KAFKA_{parameter.upper()})"


def security_config(
    security_protocol: str = "PLAINTEXT",
    *,
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password: str | None = None,
    ssl_cafile: str | Path | None = None,
    ssl_certfile: str | Path | None = None,
    ssl_keyfile: str | Path | None = None,
    ssl_password: str | None = None,
    ssl_check_hostname: bool = True,
    check_files: bool = True,
) -> dict[str, Any]:
    """kafka-python keyword arguments for TLS and SASL, for every producer, consumer and admin client.

    Plain values in (the parameter names mirror the ``LINESIGHT_KAFKA_*`` settings), a dict out that
    :func:`make_producer`, :func:`make_consumer`, :func:`make_admin` and :func:`ensure_topics` accept as
    ``security=``. Inconsistent input raises :class:`ConnectorError` naming the parameter and its setting:
    a SASL protocol without mechanism/username/password, SASL options with a non-SASL protocol, TLS files
    with a non-TLS protocol, a key without a certificate, a file that does not exist (``check_files``).
    SCRAM uses kafka-python's ``sasl_plain_username``/``sasl_plain_password`` like PLAIN does.

    >>> security_config()
    {'security_protocol': 'PLAINTEXT'}
    >>> sorted(security_config("SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p"))
    ['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']
    """
    protocol = (security_protocol or "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ConnectorError(
            f"{_name('security_protocol')} must be one of {', '.join(SECURITY_PROTOCOLS)}, got {security_protocol!r}"
        )
    uses_sasl = protocol.startswith("SASL_")
    uses_tls = protocol in ("SSL", "SASL_SSL")
    config: dict[str, Any] = {"security_protocol": protocol}
    if uses_sasl:
        if not sasl_mechanism:
            raise ConnectorError(
                f"security_protocol={protocol!r} needs {_name('sasl_mechanism')}: one of {', '.join(SASL_MECHANISMS)}"
            )
        mechanism = sasl_mechanism.upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConnectorError(
                f"{_name('sasl_mechanism')} must be one of {', '.join(SASL_MECHANISMS)}, got {sasl_mechanism!r}"
            )
        missing = [name for name, value in (("sasl_username", sasl_username), ("sasl_password", sasl_password))
                   if not value]
        if missing:
            raise ConnectorError(
                f"sasl_mechanism={mechanism!r} needs credentials: {' and '.join(_name(m) for m in missing)} "
                f"{'is' if len(missing) == 1 else 'are'} empty"
            )
        config.update(sasl_mechanism=mechanism, sasl_plain_username=sasl_username, sasl_plain_password=sasl_password)
    else:
        given = [name for name, value in (("sasl_mechanism", sasl_mechanism), ("sasl_username", sasl_username),
                                          ("sasl_password", sasl_password)) if value]
        if given:
            raise ConnectorError(
                f"{_name(given[0])} is set but security_protocol={protocol!r} does not use SASL; "
                "use SASL_SSL (or SASL_PLAINTEXT) or leave the SASL settings empty"
            )
    files = {"ssl_cafile": ssl_cafile, "ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
    if not uses_tls:
        given = [name for name, value in (*files.items(), ("ssl_password", ssl_password)) if value]
        if given:
            raise ConnectorError(
                f"{_name(given[0])} is set but security_protocol={protocol!r} does not use TLS; "
                "use SSL (or SASL_SSL) or leave the TLS settings empty"
            )
        return config
    if ssl_keyfile and not ssl_certfile:
        raise ConnectorError(f"{_name('ssl_keyfile')}={str(ssl_keyfile)!r} needs {_name('ssl_certfile')} too")
    if ssl_password and not (ssl_keyfile or ssl_certfile):
        raise ConnectorError(f"{_name('ssl_password')} is set but no client key: set {_name('ssl_keyfile')}")
    for name, value in files.items():
        if not value:
            continue
        if check_files and not Path(value).is_file():
            raise ConnectorError(f"{_name(name)}={str(value)!r} is not a readable file")
        config[name] = str(value)
    if ssl_password:
        config["ssl_password"] = ssl_password
    config["ssl_check_hostname"] = bool(ssl_check_hostname)
    return config


def producer_config(
    bootstrap_servers: str,
    *,
    max_request_size: int,
    linger_ms: int = 5,
    batch_size: int = DEFAULT_BATCH_SIZE_BYTES,
    acks: str | int = "all",
    client_id: str | None = None,
    security: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The keyword arguments :func:`make_producer` passes to ``KafkaProducer``; ``security`` as
    :func:`security_config` returns it (None = PLAINTEXT)."""
    if max_request_size < 1024:
        raise ConnectorError(f"max_request_size must be >= 1024 bytes, got {max_request_size}")
    if linger_ms < 0:
        raise ConnectorError(f"linger_ms must be >= 0, got {linger_ms}")
    if batch_size < 1:
        raise ConnectorError(f"batch_size must be >= 1 byte, got {batch_size}")
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "max_request_size": max_request_size,
        "linger_ms": linger_ms,
        "batch_size": batch_size,
        "acks": acks,
    }
    return _with_client(config, client_id, security, overrides)


def _with_client(config: dict[str, Any], client_id: str | None, security: Mapping[str, Any] | None,
                 overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the client id (when given), the security settings and the caller's overrides, in that order."""
    client = {} if client_id is None else {"client_id": client_id}
    return {**config, **client, **(security or {}), **overrides}


def make_producer(bootstrap_servers: str, **options: Any) -> KafkaProducer:
    """A ``KafkaProducer`` with the measured settings; ``options`` as :func:`producer_config`.

    A record larger than ``max_request_size`` makes ``send`` raise ``MessageSizeTooLargeError``.

    >>> producer = make_producer("127.0.0.1:9092", max_request_size=1_048_576)  # doctest: +SKIP
    >>> producer.send("linesight.frames", key=b"line-1", value=b"...").get(timeout=10)  # doctest: +SKIP
    """
    config = producer_config(bootstrap_servers, **options)
    try:
        return KafkaProducer(**config)
    except (KafkaError, ValueError) as exc:
        raise ConnectorError(f"cannot create a Kafka producer for {bootstrap_servers!r}: {exc}") from exc


def consumer_config(
    bootstrap_servers: str,
    *,
    group_id: str | None,
    client_id: str | None = None,
    max_poll_records: int = 500,
    session_timeout_ms: int = 6000,
    heartbeat_interval_ms: int = 1000,
    auto_offset_reset: str = "earliest",
    enable_auto_commit: bool = False,
    security: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The keyword arguments :func:`make_consumer` passes to ``KafkaConsumer``; ``security`` as
    :func:`security_config` returns it (None = PLAINTEXT)."""
    if max_poll_records < 1:
        raise ConnectorError(f"max_poll_records must be >= 1, got {max_poll_records}")
    if heartbeat_interval_ms >= session_timeout_ms:
        raise ConnectorError(
            f"heartbeat_interval_ms ({heartbeat_interval_ms}) must be below session_timeout_ms ({session_timeout_ms})"
        )
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "group_id": group_id,
        "max_poll_records": max_poll_records,
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": heartbeat_interval_ms,
        "auto_offset_reset": auto_offset_reset,
        "enable_auto_commit": enable_auto_commit,
    }
    return _with_client(config, client_id, security, overrides)


def make_consumer(bootstrap_servers: str, **options: Any) -> KafkaConsumer:
    """A ``KafkaConsumer`` (not subscribed yet) with manual commits and the measured group timings;
    ``options`` as :func:`consumer_config` (``group_id`` is required).

    >>> consumer = make_consumer("127.0.0.1:9092", group_id="linesight-inspect")  # doctest: +SKIP
    >>> consumer.subscribe(["linesight.frames"])  # doctest: +SKIP
    """
    config = consumer_config(bootstrap_servers, **options)
    try:
        return KafkaConsumer(**config)
    except (KafkaError, ValueError) as exc:
        raise ConnectorError(f"cannot create a Kafka consumer for {bootstrap_servers!r}: {exc}") from exc


def make_admin(
    bootstrap_servers: str, *, security: Mapping[str, Any] | None = None, **overrides: Any
) -> KafkaAdminClient:
    """A ``KafkaAdminClient`` (``security`` as :func:`security_config`); errors become :class:`ConnectorError`
    naming the servers."""
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap_servers, **{**(security or {}), **overrides})
    except (KafkaError, ValueError) as exc:
        raise ConnectorError(f"cannot connect a Kafka admin client to {bootstrap_servers!r}: {exc}") from exc


def ensure_topics(
    bootstrap_servers: str, partitions_by_topic: Mapping[str, int], *, replication_factor: int = 1,
    timeout_s: float = 10.0, configs_by_topic: Mapping[str, Mapping[str, str | int]] | None = None,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns the names created now.

    An existing topic is left as it is (its partition count and configs are not changed). Waits until
    every topic is visible in the broker's metadata. ``configs_by_topic`` holds topic configs set at
    creation, e.g. ``{"linesight.frames": {"retention.ms": 259200000}}`` (entries for topics not in
``partitions_by_topic`` are ignored); ``replication_factor`` must not
    exceed the brokers in the cluster (the broker's error names it).

    >>> ensure_topics("127.0.0.1:9092", {"linesight.frames": 4, "linesight.alerts": 1})  # doctest: +SKIP
    ['linesight.frames', 'linesight.alerts']
    """
    for topic, partitions in partitions_by_topic.items():
        if partitions < 1:
            raise ConnectorError(f"topic {topic!r} needs >= 1 partition, got {partitions}")
    if replication_factor < 1:
        raise ConnectorError(f"replication_factor must be >= 1, got {replication_factor}")
    configs_by_topic = configs_by_topic or {}
    if not partitions_by_topic:
        return []
    admin = make_admin(bootstrap_servers, security=security)
    try:
        new_topics: dict[str, dict[str, Any]] = {}
        for topic, partitions in partitions_by_topic.items():
            new_topics[topic] = {"num_partitions": partitions, "replication_factor": replication_factor}
            if configs_by_topic.get(topic):
                new_topics[topic]["configs"] = {key: str(value) for key, value in configs_by_topic[topic].items()}
        response = admin.create_topics(new_topics, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        created = []
        for entry in response["topics"]:
            code = entry["error_code"]
            if code == 0:
                created.append(entry["name"])
            elif code != _TOPIC_ALREADY_EXISTS:
                raise ConnectorError(
                    f"cannot create topic {entry['name']!r} on {bootstrap_servers!r}: error code {code} "
                    f"({entry.get('error_message') or 'no message'})"
                )
        admin.wait_for_topics(list(partitions_by_topic), timeout_ms=int(timeout_s * 1000))
        if created:
            log.info("created topics %s on %s", created, bootstrap_servers)
        existing = [topic for topic in partitions_by_topic if topic not in created]
        if existing:
            _warn_partition_mismatch(admin, {t: partitions_by_topic[t] for t in existing}, bootstrap_servers)
        return created
    except KafkaError as exc:
        raise ConnectorError(f"cannot create topics {list(partitions_by_topic)} on {bootstrap_servers!r}: {exc}") from exc
    finally:
        admin.close()


def topic_partitions(
    bootstrap_servers: str, topic: str, *, security: Mapping[str, Any] | None = None, timeout_ms: int = 5000,
) -> list[int]:
    """The partition ids of ``topic``, sorted; asks the cluster on an admin client of its own, bounded by
    ``timeout_ms`` (a consumer's own metadata request waits without a limit). :class:`ConnectorError` naming
    the topic when it does not exist or the cluster does not answer."""
    admin = make_admin(bootstrap_servers, security=security, request_timeout_ms=timeout_ms,
                       bootstrap_timeout_ms=timeout_ms)
    try:
        (entry,) = admin.describe_topics([topic])
    except (KafkaError, ValueError) as exc:
        raise ConnectorError(f"cannot describe topic {topic!r} on {bootstrap_servers!r}: {exc}") from exc
    finally:
        admin.close()
    partitions = sorted(int(p["partition_index"]) for p in entry.get("partitions") or ())
    if entry.get("error_code") or not partitions:
        raise ConnectorError(f"topic {topic!r} does not exist on {bootstrap_servers!r} (or has no partitions; "
                             f"error code {entry.get('error_code')})")
    return partitions


def _warn_partition_mismatch(admin: KafkaAdminClient, wanted: Mapping[str, int], bootstrap_servers: str) -> None:
    """Log when an existing topic has fewer partitions than configured: the extra ingest loops would idle."""
    try:
        described = admin.describe_topics(list(wanted))
    except KafkaError as exc:  # a broker that cannot describe: creation succeeded, the check is advisory
        log.debug("cannot describe topics %s on %s: %s", list(wanted), bootstrap_servers, exc)
        return
    for entry in described:
        have, want = len(entry.get("partitions") or ()), wanted.get(entry.get("topic") or entry.get("name"), 0)
        if 0 < have < want:
            log.warning(
                "topic %r on %s has %d partitions but %d are configured: at most %d consumers of one group get "
                "work (existing topics are not changed; add partitions with Kafka's tools)",
                entry.get("topic") or entry.get("name"), bootstrap_servers, have, want, have,
            )
