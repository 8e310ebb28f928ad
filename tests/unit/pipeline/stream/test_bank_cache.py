import threading

import pytest

from pipeline.stream.bank_cache import BankCache
from pipeline.stream.messages import BankRef


def ref(cls: str, version: int) -> BankRef:
    return BankRef(cls, version, f"/banks/{cls}/v{version}.safetensors")


def test_loads_once_per_version_and_records_latency():
    calls = []
    cache = BankCache(4, lambda r: calls.append(r.key) or r.key)
    assert cache.get(ref("brick", 1)) == "brick@v1"
    assert cache.get(ref("brick", 1)) == "brick@v1"
    assert calls == ["brick@v1"]
    assert set(cache.load_latencies_ms) == {"brick@v1"}


def test_new_version_is_a_new_key_the_hot_swap():
    cache = BankCache(4, lambda r: r.version)
    assert cache.get(ref("brick", 1)) == 1
    assert cache.get(ref("brick", 2)) == 2
    assert cache.keys() == ["brick@v1", "brick@v2"]


def test_least_recently_used_is_evicted():
    cache = BankCache(2, lambda r: r.key)
    cache.get(ref("a", 1))
    cache.get(ref("b", 1))
    cache.get(ref("a", 1))  # a is now the most recent
    cache.get(ref("c", 1))
    assert cache.keys() == ["a@v1", "c@v1"]
    assert cache.evictions == 1


def test_concurrent_misses_keep_one_entry():
    barrier = threading.Barrier(4)

    def slow_loader(r: BankRef) -> object:
        barrier.wait(timeout=5)
        return object()

    cache = BankCache(2, slow_loader)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(ref("a", 1)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1  # the second look returns the first loaded object
    assert cache.loads == 1


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        BankCache(0, lambda r: r)
