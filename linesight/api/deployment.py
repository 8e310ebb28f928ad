"""Ray Serve deployments: the FastAPI ingress and the ``Inspector`` (encoder + detector, banks multiplexed).

    HTTP ──► ApiIngress (FastAPI app of linesight.api.app, no torch) ──► Inspector
                                                                      @serve.multiplexed banks "class@vN"

The ingress builds its app inside the replica (``__serve_build_asgi_app__``), so no live client
or lock is pickled. ``POST /api/inspect`` asks the Inspector with
``multiplexed_model_id="class@vN"``: activating a new version changes the id, so the next request
loads the new bank (LRU of :data:`BANKS_PER_REPLICA` per replica) while the old one ages out.

>>> url = start_serve(load_settings(), host="127.0.0.1", port=8000, token="t")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from linesight.errors import LinesightError
from linesight.settings import Settings

__all__ = [
    "APP_NAME",
    "BANKS_PER_REPLICA",
    "ApiIngress",
    "InspectorDeployment",
    "ServeInspector",
    "build_application",
    "start_serve",
    "stop_serve",
]

log = logging.getLogger(__name__)

APP_NAME = "linesight"
INSPECTOR_NAME = "Inspector"
BANKS_PER_REPLICA = 8  # bank versions kept loaded per Inspector replica (LRU)
INGRESS_CPUS = 0.05  # I/O only: SQL reads, PNG rendering
INSPECTOR_CPUS = 0.25  # fractional: the stream's inference actor holds a whole CPU
SHUTDOWN_S = 5.0  # longest wait for in-flight requests when the API stops


def _replica_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one migration check per replica, not 20 lines


def _unwrap(exc: BaseException) -> BaseException:
    """The linesight error a Ray task raised (so the API answers its status and message)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, LinesightError) else exc


@serve.deployment(
    name=INSPECTOR_NAME, ray_actor_options={"num_cpus": INSPECTOR_CPUS}, max_ongoing_requests=8,
    graceful_shutdown_timeout_s=SHUTDOWN_S,
)
class InspectorDeployment:
    """Holds one :class:`~linesight.api.inspector.BankInspector`; banks are multiplexed by ``class@vN``."""

    def __init__(self, settings: Settings) -> None:
        import torch

        from linesight.api.inspector import BankInspector

        _replica_logging()
        torch.set_num_threads(settings.torch_threads)
        self.core = BankInspector(settings)
        self.core.detector  # noqa: B018 - load the encoder now, not on the first request

    @serve.multiplexed(max_num_models_per_replica=BANKS_PER_REPLICA)
    async def get_bank(self, key: str) -> Any:
        """Load bank ``class@vN`` (Serve keeps the most recently used ones)."""
        return await asyncio.to_thread(self.core.load_bank, key)

    async def inspect(self, image: np.ndarray) -> dict[str, Any]:
        """Score one image with the bank named by the request's multiplexed model id."""
        bank = await self.get_bank(serve.get_multiplexed_model_id())
        return await asyncio.to_thread(self.core.inspect, np.ascontiguousarray(image), bank)

    async def build_bank(self, product_class: str, images: list[np.ndarray], activate: bool, rotations: bool) -> Any:
        """Build and register a new version from normal images (the encoder lives here)."""
        copies = [np.array(image) for image in images]  # object-store arrays are read-only
        return await asyncio.to_thread(
            lambda: self.core.build_bank(product_class, copies, activate=activate, rotations=rotations)
        )

    async def activate_bank(self, product_class: str, version: int) -> Any:
        """Activate a version after checking that its file loads."""
        return await asyncio.to_thread(self.core.activate_bank, product_class, version)


class ServeInspector:
    """The API's :class:`~linesight.api.inspector.Inspector` backed by the Inspector deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def inspect(self, image: np.ndarray, key: str) -> dict[str, Any]:
        try:
            return await self.handle.options(multiplexed_model_id=key).inspect.remote(image)
        except Exception as exc:
            raise _unwrap(exc) from None

    async def build_bank(self, product_class: str, images: list[np.ndarray], *, activate: bool, rotations: bool) -> Any:
        try:
            return await self.handle.build_bank.remote(product_class, images, activate, rotations)
        except Exception as exc:
            raise _unwrap(exc) from None

    async def activate_bank(self, product_class: str, version: int) -> Any:
        try:
            return await self.handle.activate_bank.remote(product_class, version)
        except Exception as exc:
            raise _unwrap(exc) from None


@serve.deployment(name="ApiIngress", ray_actor_options={"num_cpus": INGRESS_CPUS}, graceful_shutdown_timeout_s=SHUTDOWN_S)
@serve.ingress()
class ApiIngress:
    """The HTTP entry point: the FastAPI app of :func:`linesight.api.app.create_app`, built in the replica."""

    def __init__(
        self, settings: Settings, token: str, inspector: DeploymentHandle, bootstrap_servers: str | None,
        expect_stream: bool,
    ) -> None:
        _replica_logging()
        self._settings = settings
        self._token = token
        self._inspector = inspector
        self._bootstrap_servers = bootstrap_servers
        self._expect_stream = expect_stream

    def __serve_build_asgi_app__(self) -> Any:
        from linesight.api.app import create_app

        return create_app(
            self._settings,
            token=self._token,
            inspector=ServeInspector(self._inspector),
            bootstrap_servers=self._bootstrap_servers,
            expect_stream=self._expect_stream,
        )


def build_application(
    settings: Settings, *, token: str, bootstrap_servers: str | None = None, expect_stream: bool = False
) -> Any:
    """The bound Serve application: ``ApiIngress`` with a handle to ``Inspector``."""
    inspector = InspectorDeployment.bind(settings)
    return ApiIngress.bind(settings, token, inspector, bootstrap_servers, expect_stream)


def start_serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str,
    bootstrap_servers: str | None = None,
    expect_stream: bool = False,
    app_name: str = APP_NAME,
) -> str:
    """Start Serve's HTTP proxy on ``host:port`` (Ray must be initialised) and deploy; returns the base URL."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(
        build_application(settings, token=token, bootstrap_servers=bootstrap_servers, expect_stream=expect_stream),
        name=app_name,
        route_prefix="/",
    )
    url = f"http://{host}:{port}"
    log.info("linesight API on %s (docs %s/docs, dashboard %s/)", url, url, url)
    return url


def stop_serve() -> None:
    """Shut Serve down (its proxy and every application)."""
    serve.shutdown()
