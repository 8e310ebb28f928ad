"""Versioned LRU cache of memory banks: the hot-swap mechanism (Ray Serve multiplexing style).

Keys are ``class@vN``; activating a new version makes the stream ask for a new key, which is
loaded once (lock, then a second look) while frames of other classes keep flowing, and the least
recently used version is evicted when the cache is full.

>>> cache = BankCache(capacity=2, loader=lambda ref: ref.path)
>>> cache.get(BankRef("brick", 1, "/banks/brick/v1.safetensors"))
'/banks/brick/v1.safetensors'
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from pipeline.stream.messages import BankRef

__all__ = ["BankCache"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class BankCache(Generic[T]):
    """Thread-safe LRU of loaded banks keyed by :attr:`BankRef.key`; records load latency."""

    def __init__(self, capacity: int, loader: Callable[[BankRef], T]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._loader = loader
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self.load_latencies_ms: dict[str, float] = {}
        self.loads = 0
        self.evictions = 0

    def get(self, ref: BankRef) -> T:
        """The bank for ``ref``, loading it on first use."""
        with self._lock:
            if ref.key in self._items:
                self._items.move_to_end(ref.key)
                return self._items[ref.key]
        start = time.perf_counter()
        loaded = self._loader(ref)  # outside the lock: other classes keep scoring meanwhile
        with self._lock:
            if ref.key in self._items:  # second look: another thread loaded it meanwhile
                self._items.move_to_end(ref.key)
                return self._items[ref.key]
            self._items[ref.key] = loaded
            self.loads += 1
            self.load_latencies_ms[ref.key] = (time.perf_counter() - start) * 1000.0
            log.info("loaded bank %s in %.1f ms", ref.key, self.load_latencies_ms[ref.key])
            while len(self._items) > self._capacity:
                evicted, _ = self._items.popitem(last=False)
                self.evictions += 1
                log.info("evicted bank %s", evicted)
            return loaded

    @property
    def capacity(self) -> int:
        """How many banks the cache holds before it evicts the least recently used."""
        return self._capacity

    def keys(self) -> list[str]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._items)
