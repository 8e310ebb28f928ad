"""The model side of the API: inspect one image, build and activate banks.

:class:`BankInspector` holds the frozen encoder, a :class:`~model.detector.Detector` and a
:class:`~pipeline.services.banks.BankManager`; it is synchronous. The API talks to it through the async
:class:`Inspector` protocol: :class:`LocalInspector` runs it in this process (tests, ``--no-serve``
tools) with a versioned LRU (:class:`~pipeline.stream.bank_cache.BankCache`); in Ray Serve the
``Inspector`` deployment (:mod:`linesight.api.deployment`) holds it and loads banks through
``@serve.multiplexed`` keyed by ``class@vN``, so activating a new version is a new key (a swap).

>>> parse_bank_key("brick@v3")
('brick', 3)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from linesight.settings import Settings

__all__ = ["Inspector", "BankInspector", "LocalInspector", "parse_bank_key", "bank_key"]

from model.names import bank_key, parse_bank_key  # noqa: E402 - re-exported for the routes

log = logging.getLogger(__name__)


class Inspector(Protocol):
    """What the routes need from the model side (all methods are coroutines)."""

    async def inspect(self, image: np.ndarray, key: str) -> dict[str, Any]:
        """Score one uint8 RGB image against bank ``class@vN``; the verdict dict."""

    async def build_bank(
        self, product_class: str, images: list[np.ndarray], *, activate: bool, rotations: bool
    ) -> Any:
        """Build, register (and maybe activate) a new version; its :class:`~storage.rows.BankRow`."""

    async def activate_bank(self, product_class: str, version: int) -> Any:
        """Check the file loads and make the version active; its row."""


class BankInspector:
    """Encoder + detector + bank manager of one process (synchronous; one image at a time)."""

    def __init__(self, settings: Settings, repository: Any | None = None, encoder: Any | None = None) -> None:
        from pipeline.services.banks import BankManager

        self.settings = settings
        self.manager = BankManager(settings, repository=repository, encoder=encoder)
        self._detector: Any | None = None
        self._lock = threading.Lock()  # the encoder runs one batch at a time (2 cores)

    @property
    def detector(self) -> Any:
        """The detector (the encoder is built on first use)."""
        if self._detector is None:
            self._detector = self.manager.detector()  # the settings' fusion and engine (model.factory)
        return self._detector

    def load_bank(self, key: str) -> Any:
        """Load the registered bank file of ``class@vN`` (checked against the encoder)."""
        from model.bank import MemoryBank

        product_class, version = parse_bank_key(key)
        row = self.manager.repository.get_bank(product_class, version)  # NotFoundError -> 404
        started = time.perf_counter()
        bank = MemoryBank.load(
            Path(row.path), expected_encoder=row.encoder, expected_sha256=row.sha256,
            max_rows=self.settings.max_bank_rows,
        )
        log.info("loaded bank %s in %.1f ms", key, (time.perf_counter() - started) * 1000.0)
        return bank

    def inspect(self, image: np.ndarray, bank: Any) -> dict[str, Any]:
        """Score ``image`` against a loaded bank; the verdict dict (no map or mask)."""
        started = time.perf_counter()
        with self._lock:
            result = self.detector.score_batch([image], bank)[0]
        return {
            "product_class": bank.product_class,
            "bank_version": int(bank.version),
            "is_anomalous": bool(result.is_anomalous),
            "score": round(float(result.score), 6),
            "threshold": round(float(result.threshold), 6),
            "positions": list(result.positions),
            "region_count": int(result.region_count),
            "verdict": result.verdict,
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 2),
        }

    def build_bank(
        self, product_class: str, images: Sequence[np.ndarray], *, activate: bool = True, rotations: bool = True
    ) -> Any:
        """:meth:`BankManager.build` under the encoder lock; the new version's row."""
        with self._lock:
            return self.manager.build(product_class, list(images), activate=activate, rotations=rotations)

    def activate_bank(self, product_class: str, version: int) -> Any:
        """:meth:`BankManager.activate`: refuses a bank file that does not load."""
        return self.manager.activate(product_class, version)


class LocalInspector:
    """:class:`Inspector` in this process: a :class:`BankInspector` run in worker threads, banks in an LRU.

    >>> inspector = LocalInspector(BankInspector(load_settings()))  # doctest: +SKIP
    """

    def __init__(self, core: BankInspector, cache_size: int | None = None) -> None:
        from pipeline.stream.bank_cache import BankCache
        from pipeline.stream.messages import BankRef

        self.core = core
        self._ref = BankRef
        self.banks = BankCache(cache_size or core.settings.bank_cache_size, lambda ref: core.load_bank(ref.key))

    async def inspect(self, image: np.ndarray, key: str) -> dict[str, Any]:
        from anyio import to_thread

        product_class, version = parse_bank_key(key)
        bank = await to_thread.run_sync(self.banks.get, self._ref(product_class, version, ""))
        return await to_thread.run_sync(self.core.inspect, image, bank)

    async def build_bank(
        self, product_class: str, images: list[np.ndarray], *, activate: bool, rotations: bool
    ) -> Any:
        from anyio import to_thread

        return await to_thread.run_sync(
            lambda: self.core.build_bank(product_class, images, activate=activate, rotations=rotations)
        )

    async def activate_bank(self, product_class: str, version: int) -> Any:
        from anyio import to_thread

        return await to_thread.run_sync(self.core.activate_bank, product_class, version)
