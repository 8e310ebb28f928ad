"""The embedded broker's errors name the binary and port; configured servers start nothing."""

from __future__ import annotations

import pytest

from connectors.exceptions import BrokerError
from connectors.tansu import EmbeddedBroker, broker_for, free_port
from linesight.settings import load_settings


def test_configured_servers_are_used_as_they_are():
    with broker_for(load_settings(kafka_bootstrap_servers="kafka-1:9092,kafka-2:9092")) as servers:
        assert servers == "kafka-1:9092,kafka-2:9092"


def test_a_binary_that_is_not_executable_is_named(tmp_path):
    with pytest.raises(BrokerError, match="no-tansu"):
        EmbeddedBroker(binary=str(tmp_path / "no-tansu")).start()


def test_a_binary_that_exits_is_named_with_the_port(tmp_path):
    fake = tmp_path / "fake-tansu"
    fake.write_text("#!/bin/sh\necho 'address already in use' >&2\nexit 3\n")
    fake.chmod(0o755)
    port = free_port()
    broker = EmbeddedBroker(binary=str(fake), port=port, log_dir=tmp_path, startup_timeout_s=5)
    with pytest.raises(BrokerError) as info:
        broker.start()
    message = str(info.value)
    assert "fake-tansu" in message
    assert str(port) in message
    assert "code 3" in message
    assert "address already in use" in message
    assert not broker.running


def test_bootstrap_servers_needs_a_running_broker():
    with pytest.raises(BrokerError, match="not running"):
        _ = EmbeddedBroker().bootstrap_servers
