"""TTL + LRU cache with a fake clock."""

from __future__ import annotations

import pytest

from launcher.clock import Clock
from launcher.resolve.cache import CacheStats, TTLCache


class Now:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_ttl_expiry() -> None:
    now = Now()
    cache: TTLCache[str, str] = TTLCache(ttl=10.0, max_entries=5, clock=Clock(monotonic=now))
    cache.put("a", "1")
    now.t += 9.999
    assert cache.get("a") == "1"
    assert cache.age("a") == pytest.approx(9.999)
    now.t += 0.001
    assert cache.get("a") is None  # exactly ttl old: expired
    assert len(cache) == 0
    assert cache.stats == CacheStats(hits=1, misses=1, evictions=0, expirations=1)


def test_put_refreshes_the_timestamp() -> None:
    now = Now()
    cache: TTLCache[str, str] = TTLCache(ttl=10.0, max_entries=5, clock=Clock(monotonic=now))
    cache.put("a", "1")
    now.t += 8
    cache.put("a", "2")
    now.t += 8
    assert cache.get("a") == "2"


def test_lru_eviction() -> None:
    now = Now()
    cache: TTLCache[str, int] = TTLCache(ttl=100.0, max_entries=3, clock=Clock(monotonic=now))
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert cache.get("a") == 0  # a is now the most recently used; b the least
    cache.put("d", 3)
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [0, 2, 3]
    cache.put("e", 4)  # c is the least recently used now (a, c, d were read in that order)
    assert cache.get("a") is None
    assert len(cache) == 3
    assert cache.stats.evictions == 2


def test_counters() -> None:
    now = Now()
    cache: TTLCache[str, str] = TTLCache(ttl=5.0, max_entries=1, clock=Clock(monotonic=now))
    assert cache.get("x") is None
    cache.put("x", "1")
    assert cache.get("x") == "1"
    assert cache.get("x") == "1"
    cache.put("y", "2")  # evicts x
    now.t += 5
    assert cache.get("y") is None  # expired
    assert cache.stats == CacheStats(hits=2, misses=2, evictions=1, expirations=1)


def test_zero_ttl_disables_caching() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=0.0, max_entries=10, clock=Clock(monotonic=Now()))
    cache.put("a", "1")
    assert cache.get("a") is None
    assert len(cache) == 0


def test_invalidate_and_age() -> None:
    now = Now()
    cache: TTLCache[str, str] = TTLCache(ttl=50.0, max_entries=10, clock=Clock(monotonic=now))
    assert cache.age("a") is None
    cache.put("a", "1")
    now.t += 3
    assert cache.age("a") == 3.0
    cache.invalidate("a")
    cache.invalidate("never-there")
    assert cache.get("a") is None
