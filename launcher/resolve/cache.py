"""A TTL + LRU cache of fetched secrets, with an injected clock.

Keys are ``FetchKey`` (source, path, version). The cache lives as long as the
launcher process (across child restarts) and is never written to disk.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from launcher.clock import SYSTEM, Clock

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class CacheStats:
    """What the cache did: hits, misses, expirations and evictions (``Client.stats``)."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0


class TTLCache(Generic[K, V]):
    """Entries live ``ttl`` seconds (or the lifetime ``put`` gives them); beyond ``max_entries``
    the least recently used goes.

    Thread-safe: the resolver reads and writes it from its worker threads.
    A ``ttl`` of 0 disables caching.
    """

    def __init__(self, ttl: float, max_entries: int, clock: Clock = SYSTEM) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.stats = CacheStats()
        self._data: OrderedDict[K, tuple[float, float, V]] = OrderedDict()  # key -> (stored at, lifetime, value)
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            stored_at, lifetime, value = entry
            if self.clock.monotonic() - stored_at >= lifetime:
                del self._data[key]
                self.stats.expirations += 1
                self.stats.misses += 1
                return None
            self._data.move_to_end(key)
            self.stats.hits += 1
            return value

    def put(self, key: K, value: V, lifetime: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds, or for ``lifetime`` when given (an issued
        certificate: until it is due to be issued again). Nothing is stored when ``ttl`` is 0."""
        if self.ttl <= 0:
            return
        with self._lock:
            self._data[key] = (self.clock.monotonic(), self.ttl if lifetime is None else lifetime, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
                self.stats.evictions += 1

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._data.pop(key, None)

    def age(self, key: K) -> float | None:
        """Seconds since ``key`` was stored, or None when absent."""
        with self._lock:
            entry = self._data.get(key)
            return None if entry is None else self.clock.monotonic() - entry[0]

    def __len__(self) -> int:
        return len(self._data)
