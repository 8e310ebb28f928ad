"""What the routes share: settings, the repository, the inspector, the dialogue and the stream's counters.

Heavy parts are built on first use, so an app object stays small (Ray Serve pickles it into the
ingress replica) and ``create_app`` is fast in tests.

>>> from linesight.settings import load_settings
>>> ApiContext(load_settings(database_url="sqlite://")).repository.database.dialect_name
'sqlite'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from fastapi import Request

from linesight.settings import Settings

__all__ = ["ApiContext", "get_context", "ray_monitor_snapshot"]

log = logging.getLogger(__name__)

MONITOR_TIMEOUT_S = 2.0


def ray_monitor_snapshot() -> dict[str, Any] | None:
    """The stream monitor's snapshot, or ``None`` when Ray is not running here or no stream runs."""
    import ray

    if not ray.is_initialized():
        return None
    from pipeline.stream.monitor import get_monitor

    monitor = get_monitor()
    if monitor is None:
        return None
    try:
        return ray.get(monitor.snapshot.remote(), timeout=MONITOR_TIMEOUT_S)
    except Exception as exc:  # an actor that died or hangs: the stream reads as down
        log.warning("stream monitor did not answer: %s", exc)
        return None


class ApiContext:
    """Dependencies of the routes; every attribute that needs a service is created lazily."""

    def __init__(
        self,
        settings: Settings,
        *,
        repository: Any | None = None,
        inspector: Any | None = None,
        dialogue: Any | None = None,
        bootstrap_servers: str | None = None,
        expect_stream: bool = False,
        stream_snapshot: Callable[[], dict[str, Any] | None] = ray_monitor_snapshot,
    ) -> None:
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers or settings.kafka_bootstrap_servers
        self.expect_stream = expect_stream
        self.stream_snapshot = stream_snapshot
        self._repository = repository
        self._owns_repository = False
        self._inspector = inspector
        self._dialogue = dialogue
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # pickled into a Serve replica: no live clients
        state = dict(self.__dict__)
        state["_lock"] = None
        if state.get("_owns_repository"):
            state["_repository"], state["_owns_repository"] = None, False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def repository(self) -> Any:
        """The :class:`~storage.repository.Repository` (the schema is migrated on first use)."""
        with self._lock:
            return self._repository_unlocked()

    @property
    def inspector(self) -> Any:
        """The :class:`~linesight.api.inspector.Inspector` (a local one when none was given)."""
        with self._lock:
            if self._inspector is None:
                from linesight.api.inspector import BankInspector, LocalInspector

                self._inspector = LocalInspector(BankInspector(self.settings, repository=self._repository_unlocked()))
            return self._inspector

    def dialogue(self) -> Any:
        """The ``DialogueService`` of ``pipeline.services.dialogue`` (it answers 503 itself when its model cannot load)."""
        with self._lock:
            if self._dialogue is None:
                from pipeline.services.dialogue import DialogueService

                self._dialogue = DialogueService(self.settings, repository=self._repository_unlocked())
            return self._dialogue

    def _repository_unlocked(self) -> Any:
        if self._repository is None:
            from storage.db import Database
            from storage.repository import Repository

            database = Database(self.settings.database_url)
            database.migrate()
            self._repository = Repository(database)
            self._owns_repository = True
        return self._repository


def get_context(request: Request) -> ApiContext:
    """FastAPI dependency: the app's :class:`ApiContext`."""
    return request.app.state.context
