"""One embedded Tansu broker per data folder, shared by every command that runs on it.

The broker is recorded in ``<data_dir>/broker.json`` (pid, host, port, start time, the pids of the
commands using it now, and ``keep``). ``run``, ``serve``, ``camera``, ``alerts`` and ``demo`` find it
there and reuse it while it is alive, so a camera publishes to the broker the stream consumes and a
restarted ``run`` finds the frames its crashed predecessor left (while the broker lives).

- **Who stops it**: the last command using it, when it leaves (``keep=False``); a broker started by
  ``linesight broker start`` (``keep=True``) runs until ``linesight broker stop``.
- **Crashes**: a command that dies without leaving is pruned from the users (its pid is gone); the
  next command adopts the broker and stops it when it is the last one. A record whose process is gone
  (or whose pid now belongs to another program) is stale and removed; a broker process that no longer
  answers Kafka requests is killed. Nothing is orphaned for longer than until the next command.
- **Memory only**: Tansu keeps topics in memory; stopping the broker loses every frame on it.
  It is for demos and tests; production points ``LINESIGHT_KAFKA_BOOTSTRAP_SERVERS`` at Kafka.

Every read-modify-write of the record holds ``<data_dir>/broker.lock`` (``fcntl.flock``).

>>> with shared_broker("linesight-data") as servers:  # doctest: +SKIP
...     servers
'127.0.0.1:40123'
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from connectors.exceptions import BrokerError

__all__ = [
    "BROKER_FILE",
    "BrokerRecord",
    "BrokerStatus",
    "broker_status",
    "shared_broker",
    "start_broker",
    "stop_broker",
]

log = logging.getLogger(__name__)

BROKER_FILE = "broker.json"
_LOCK_FILE = "broker.lock"
_LOCK_TIMEOUT_S = 60.0  # a start holds the lock for at most the broker's startup timeout (20 s)
_STOP_GRACE_S = 6.0  # Tansu waits ~5 s for open clients on SIGTERM (measured facts in docs/architecture.md)
_ANSWER_TIMEOUT_S = 3.0
_spawned: dict[int, subprocess.Popen[bytes]] = {}  # brokers this process started: reaped when stopped here


@dataclass(frozen=True)
class BrokerRecord:
    """What ``broker.json`` holds about the data folder's broker."""

    pid: int
    host: str
    port: int
    started_at: str
    log_path: str
    keep: bool = False  # started by `linesight broker start`: runs until `linesight broker stop`
    clients: tuple[int, ...] = field(default_factory=tuple)  # pids of the commands using it (one per use)

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class BrokerStatus:
    """``state``: running (alive, answers Kafka), stopped (no record), stale (record of a gone process),
    hung (the broker process lives but does not answer)."""

    state: Literal["running", "stopped", "stale", "hung"]
    data_dir: Path
    record: BrokerRecord | None
    detail: str

    @property
    def live_clients(self) -> tuple[int, ...]:
        """Pids of the commands using the broker that are still alive."""
        return tuple(pid for pid in (self.record.clients if self.record else ()) if _pid_alive(pid))


# --- public ----------------------------------------------------------------------------------
def broker_status(data_dir: str | os.PathLike[str]) -> BrokerStatus:
    """What ``<data_dir>/broker.json`` says and whether that broker is alive; changes nothing."""
    folder = Path(data_dir).resolve()
    return _classify(folder, _read(folder))


@contextlib.contextmanager
def shared_broker(data_dir: str | os.PathLike[str]) -> Iterator[str]:
    """Use the data folder's broker for the ``with`` block (start it when none lives); yields its servers.

    On leaving, this command is removed from the users; the broker is stopped when no live user remains
    and it was not started by ``linesight broker start``.
    """
    folder = Path(data_dir).resolve()
    with _locked(folder):
        record = _acquire(folder, keep=False)
    try:
        yield record.bootstrap_servers
    finally:
        with _locked(folder):
            _release(folder, record.pid)


def start_broker(data_dir: str | os.PathLike[str], *, port: int | None = None) -> tuple[BrokerRecord, bool]:
    """``linesight broker start``: the folder's broker, kept until :func:`stop_broker`; (record, started_now).

    A live broker is reused (and marked ``keep``); ``port`` applies only when a new one starts.
    """
    folder = Path(data_dir).resolve()
    with _locked(folder):
        before = _classify(folder, _read(folder))
        record = _acquire(folder, keep=True, port=port, register=False)
        return record, before.state != "running"


def stop_broker(data_dir: str | os.PathLike[str]) -> BrokerStatus:
    """``linesight broker stop``: stop the folder's broker whoever uses it; returns its status before.

    Commands still using it lose their broker (their Kafka clients report it); a stale record is removed,
    a hung broker killed.
    """
    folder = Path(data_dir).resolve()
    with _locked(folder):
        status = _classify(folder, _read(folder))
        if status.record is None:
            return status
        if status.state in ("running", "hung"):
            _terminate(status.record.pid, hard=status.state == "hung")
        _remove(folder)
        return status


# --- record life cycle (callers hold the lock) --------------------------------------------------
def _acquire(folder: Path, *, keep: bool, port: int | None = None, register: bool = True) -> BrokerRecord:
    status = _classify(folder, _read(folder))
    me = (os.getpid(),) if register else ()
    if status.state == "running":
        assert status.record is not None
        previous = status.live_clients
        if status.record.clients and not previous and not status.record.keep:
            log.warning("adopting the embedded broker on %s left by a command that ended without stopping it",
                        status.record.bootstrap_servers)
        record = replace(status.record, clients=previous + me, keep=status.record.keep or keep)
        _write(folder, record)
        log.info("reusing the embedded broker on %s (pid %d, %s)", record.bootstrap_servers, record.pid,
                 folder / BROKER_FILE)
        return record
    if status.state == "hung":
        assert status.record is not None
        log.warning("killing the embedded broker pid %d: %s", status.record.pid, status.detail)
        _terminate(status.record.pid, hard=True)
    if status.state in ("hung", "stale"):
        log.warning("removing %s: %s", folder / BROKER_FILE, status.detail)
        _remove(folder)
    record = _spawn(folder, port=port, keep=keep, clients=me)
    _write(folder, record)
    return record


def _release(folder: Path, pid: int) -> None:
    status = _classify(folder, _read(folder))
    record = status.record
    if record is None or record.pid != pid:
        return  # stopped (`broker stop`) or replaced meanwhile: nothing of ours to release
    clients = list(status.live_clients)
    if os.getpid() in clients:
        clients.remove(os.getpid())
    if status.state != "running":  # it died or hung while we used it: clean up now, not at the next start
        if status.state == "hung":
            _terminate(record.pid, hard=True)
        _remove(folder)
        return
    if record.keep or clients:
        _write(folder, replace(record, clients=tuple(clients)))
        return
    log.info("stopping the embedded broker on %s: no command uses it any more", record.bootstrap_servers)
    _terminate(record.pid, hard=False)
    _remove(folder)


def _spawn(folder: Path, *, port: int | None, keep: bool, clients: tuple[int, ...]) -> BrokerRecord:
    from connectors.tansu import EmbeddedBroker

    broker = EmbeddedBroker(port=port, log_dir=folder / "broker-logs").start()
    host, broker_port, log_path = broker.host, int(broker.bootstrap_servers.rsplit(":", 1)[1]), broker.log_path
    process = broker.detach()
    _spawned[process.pid] = process
    log.info("started the embedded broker on %s:%d (pid %d), recorded in %s; memory only: its frames are lost "
             "when it stops", host, broker_port, process.pid, folder / BROKER_FILE)
    return BrokerRecord(
        pid=process.pid, host=host, port=broker_port, started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        log_path=str(log_path), keep=keep, clients=clients,
    )


# --- liveness --------------------------------------------------------------------------------
def _classify(folder: Path, record: BrokerRecord | None) -> BrokerStatus:
    if record is None:
        return BrokerStatus("stopped", folder, None, f"no {BROKER_FILE} in {folder}")
    if not _pid_alive(record.pid):
        return BrokerStatus("stale", folder, record, f"broker pid {record.pid} is not running")
    if not _is_tansu(record):
        return BrokerStatus("stale", folder, record, f"pid {record.pid} is no longer a Tansu broker on port "
                                                     f"{record.port}")
    from connectors.tansu import _kafka_answers, _port_open

    if _port_open(record.host, record.port) and _kafka_answers(
        record.bootstrap_servers, time.monotonic() + _ANSWER_TIMEOUT_S
    ):
        return BrokerStatus("running", folder, record, f"answers on {record.bootstrap_servers}")
    return BrokerStatus("hung", folder, record, f"broker pid {record.pid} does not answer on "
                                                f"{record.bootstrap_servers}")


def _pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not reaped) counts as gone."""
    if pid <= 0:
        return False
    if Path("/proc/self/stat").exists():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_tansu(record: BrokerRecord) -> bool:
    """The pid still runs Tansu on the recorded port (pids are reused)."""
    try:
        argv = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the port check that follows
    text = b" ".join(argv).decode(errors="replace")
    return "tansu" in text and f":{record.port}" in text


def _terminate(pid: int, *, hard: bool) -> None:
    """SIGTERM (SIGKILL when ``hard`` or after 6 s); waits until the process is gone."""
    process = _spawned.pop(pid, None)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    while _pid_alive(pid) and time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.05)
    if _pid_alive(pid):
        log.warning("embedded broker pid %d ignored SIGTERM for %g s: sending SIGKILL", pid, _STOP_GRACE_S)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


# --- the record file -------------------------------------------------------------------------
def _read(folder: Path) -> BrokerRecord | None:
    path = folder / BROKER_FILE
    try:
        data = json.loads(path.read_text())
        return BrokerRecord(
            pid=int(data["pid"]), host=str(data["host"]), port=int(data["port"]),
            started_at=str(data.get("started_at", "")), log_path=str(data.get("log_path", "")),
            keep=bool(data.get("keep", False)), clients=tuple(int(p) for p in data.get("clients", ())),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def _write(folder: Path, record: BrokerRecord) -> None:
    path = folder / BROKER_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps({**asdict(record), "clients": list(record.clients)}, indent=2) + "\n")
    temporary.replace(path)


def _remove(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / BROKER_FILE).unlink()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / _LOCK_FILE, "a+")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BrokerError(f"cannot use data folder {str(folder)!r} for the embedded broker: {exc}") from exc
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BrokerError(
                        f"{folder / _LOCK_FILE} stayed locked for {_LOCK_TIMEOUT_S:g} s: another linesight "
                        "command is starting or stopping the embedded broker"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        handle.close()  # closing releases the lock
