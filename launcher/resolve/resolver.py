"""Bindings -> environment: dedupe, concurrency, retry, cache, all-or-nothing.

One resolution fetches each distinct (source, path, version) exactly once, on
a thread pool, so the user and password of one dynamic-credentials read come
from the same lease; concurrent callers of one key share one read (single
flight). Every outcome is collected (``check`` shows them all); callers then
enforce all-or-nothing with the most fundamental error (78 > 77 > 69 > 66).
What each variable's value is, given what was read, is ``bindings.py``'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from launcher.clock import SYSTEM, Clock
from launcher.errors import LauncherError, ManifestError
from launcher.events import NOTHING, Event, EventSink
from launcher.model.config import Manifest, SourceConfig
from launcher.model.refs import FetchKey
from launcher.resolve.bindings import (
    BindingResult,
    env_from_name,
    evaluate,
    expand_env_from,
    inline_bindings,
    secret_fields,
    select,
)
from launcher.resolve.cache import TTLCache
from launcher.resolve.failover import with_fallback
from launcher.resolve.resolution import Resolution
from launcher.resolve.retry import call_with_retry
from launcher.sources.base import Batching, Local, Secret, Source, Writing, renew_after
from launcher.sources.catalog import open_source, source_config

__all__ = [  # what the resolver's callers use, some of it from bindings.py and resolution.py
    "BindingResult", "Resolution", "Resolver", "env_from_name", "inline_bindings", "log_resolved", "secret_fields", "select",
]

log = logging.getLogger(__name__)

# From this many reads of one source at once, a source that can batch them does
# (Vault: one pipelined round trip per connection instead of one per read).
BATCH_MIN = 8
# The most a batch may take before its leftovers are read one by one (seconds).
BATCH_BOUND = 2.0

SourceFactory = Callable[[SourceConfig], Source]


class _Flight:
    """One read under way: later callers of the same key wait on ``done`` and share its outcome."""

    __slots__ = ("done", "error", "secret")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.secret: Secret | None = None
        self.error: BaseException | None = None

    def outcome(self) -> Secret:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.secret is not None
        return self.secret


class Resolver:
    """Resolves a manifest's bindings; sources are opened lazily and kept for reuse."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        source_factory: SourceFactory = open_source,
        cache: TTLCache[FetchKey, Secret] | None = None,
        clock: Clock | None = None,
        max_workers: int = 32,
        events: EventSink = NOTHING,
    ) -> None:
        self.manifest = manifest
        self.events = events  # told of every read (fetch events), and handed to the sources it opens
        # The default factory gets the sink too: sources report their logins and lease revocations.
        self._factory = source_factory if source_factory is not open_source else (lambda config: open_source(config, events))
        self.clock = clock or SYSTEM
        self.cache = cache if cache is not None else TTLCache(manifest.cache.ttl, manifest.cache.max_entries, self.clock)
        self.max_workers = max_workers
        self._sources: dict[str, Source] = {}
        self._source_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._flights: dict[FetchKey, _Flight] = {}  # reads under way (``fetch``'s single flight)
        self.fetches = 0  # reads started at a backend (each with its retries), for ``Client.stats``
        # Set when the launcher is leaving: a fetch waiting to retry gives up at once.
        self.stopping = threading.Event()

    def source(self, name: str) -> Source:
        """The open source called ``name`` (opened on first use; may log in)."""
        with self._lock:
            lock = self._source_locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._sources:
                config = source_config(self.manifest, name)
                # With a ``fallback``, the source is NAME's wrapped with OTHER's (README "Failover").
                self._sources[name] = with_fallback(self._factory(config), config, self.manifest, self.source,
                                                    clock=self.clock, events=self.events, stop=self.stopping)
            return self._sources[name]

    def close(self) -> None:
        self.stopping.set()
        for src in self._sources.values():
            try:
                src.close()
            except Exception:  # closing must never mask the real outcome
                log.debug("closing source %s failed", src.name, exc_info=True)

    def fetch(self, key: FetchKey, use_cache: bool = True, bindings: tuple[str, ...] = ()) -> Secret:
        """One secret, from the cache or the backend (with retry); a read from the backend is
        told to ``events`` (a fetch event naming ``bindings``, the variables that use it).

        Single flight: while one thread reads ``key``, other callers of it (threads
        sharing a Python API client) wait for that read and share its outcome, secret
        or error, so N concurrent misses make one read (and one lease). A read under
        way is joined even with ``use_cache=False``: it began moments ago, and a
        version it missed is seen by the next check.
        """
        if use_cache:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leading:
            return flight.outcome()
        try:
            # A read that ended between this caller's miss and its taking the lead has just
            # stored the secret: use it (``age`` peeks without counting a miss).
            age = self.cache.age(key) if use_cache else None
            secret = self.cache.get(key) if age is not None and age < self.cache.ttl else None
            if secret is None:
                with self._lock:
                    self.fetches += 1
                secret = self._read(key, bindings)
            flight.secret = secret
            return secret
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _read(self, key: FetchKey, bindings: tuple[str, ...]) -> Secret:
        """Read ``key`` from its backend (with retry), cache it, and tell ``events``."""
        try:
            src = self.source(key.source)
            secret = call_with_retry(lambda: _read_from(src, key), self.manifest.retry, self.clock, stop=self.stopping)
        except LauncherError as exc:
            self.events.emit(Event("fetch", source=key.source, ref=str(key), bindings=bindings, outcome=exc.status))
            raise
        self._store(key, secret, bindings)
        return secret

    def _store(self, key: FetchKey, secret: Secret, bindings: tuple[str, ...]) -> None:
        """Cache a secret just read from its backend, and tell ``events``.

        An issued secret (a certificate) is cached until it is due to be issued again,
        whatever ``cache.ttl`` says: its value never changes at the source, it expires.
        """
        self.cache.put(key, secret, renew_after(secret, self.clock.wall()))
        expires = self.clock.wall() + secret.lease.duration if secret.lease is not None else None
        self.events.emit(Event("fetch", source=key.source, ref=str(key), version=secret.version, bindings=bindings,
                               expires_at=expires))

    def _read_batches(self, keys: list[FetchKey], uses: Mapping[FetchKey, tuple[str, ...]]) -> dict[FetchKey, Secret]:
        """Read many keys of one source in one go where the source can (``Batching``).

        What a batch answers is cached and told like any read; what it leaves out
        is read key by key afterwards, with the retry policy and its messages. The
        batch gets a tenth of ``retry.deadline`` (at most BATCH_BOUND), so a server
        that stalls costs a run little more than the deadline.
        """
        by_source: dict[str, list[FetchKey]] = {}
        for key in keys:
            if not key.data:  # a write is never batched
                by_source.setdefault(key.source, []).append(key)
        within = min(BATCH_BOUND, self.manifest.retry.deadline / 10)
        found: dict[FetchKey, Secret] = {}
        for name, group in by_source.items():
            src = self._sources.get(name)
            if len(group) < BATCH_MIN or not isinstance(src, Batching):
                continue
            try:
                secrets = src.read_many([(k.path, k.version) for k in group], within)
            except Exception:  # best effort: the keys are read one by one below
                log.debug("batch read from %s failed", name, exc_info=True)
                continue
            for key in group:
                if (secret := secrets.get((key.path, key.version))) is not None:
                    with self._lock:
                        self.fetches += 1
                    self._store(key, secret, uses.get(key, ()))
                    found[key] = secret
        return found

    def fetch_all(self, keys: Iterable[FetchKey], use_cache: bool = True,
                  uses: Mapping[FetchKey, tuple[str, ...]] | None = None) -> dict[FetchKey, Secret | LauncherError]:
        """Fetch distinct keys concurrently; every outcome is returned, none raised.

        ``uses``: the variables each key is read for (named in fetch events). The steps:
        what the cache holds; the sources opened; batches where a source reads many at
        once; the rest concurrently (local sources on the calling thread).
        """
        unique = list(dict.fromkeys(keys))
        uses = uses or {}
        outcomes: dict[FetchKey, Secret | LauncherError] = dict(self._cached(unique)) if use_cache else {}
        to_fetch = [k for k in unique if k not in outcomes]
        self._open_sources(to_fetch)
        local, remote = self._by_locality(to_fetch)
        if len(remote) >= BATCH_MIN:
            outcomes.update(self._read_batches(remote, uses))
            remote = [key for key in remote if key not in outcomes]
        outcomes.update(self._read_concurrently(remote, local, uses))
        return {k: outcomes[k] for k in unique}

    def _cached(self, keys: list[FetchKey]) -> dict[FetchKey, Secret]:
        """The keys the cache holds a fresh secret for."""
        found: dict[FetchKey, Secret] = {}
        for key in keys:
            if (cached := self.cache.get(key)) is not None:
                found[key] = cached
        return found

    def _open_sources(self, keys: list[FetchKey]) -> None:
        """Open the keys' sources first, on this thread: opening one imports its client library
        (tens of ms of CPU), and helper threads started meanwhile would each queue for the GIL
        just to get going (31 thread starts took 70 ms that way)."""
        for name in dict.fromkeys(k.source for k in keys):
            try:
                self.source(name)
            except LauncherError:
                pass  # reported for each of its keys by ``_read_one``

    def _by_locality(self, keys: list[FetchKey]) -> tuple[list[FetchKey], list[FetchKey]]:
        """(local, remote): keys of sources that read without network I/O (``Local``), and the others."""
        local: list[FetchKey] = []
        remote: list[FetchKey] = []
        for key in keys:
            src = self._sources.get(key.source)
            (local if isinstance(src, Local) and src.local else remote).append(key)
        return local, remote

    def _read_one(self, key: FetchKey, uses: Mapping[FetchKey, tuple[str, ...]]) -> Secret | LauncherError:
        """One key's outcome, never raised (the cache was asked already, once per key)."""
        try:
            return self.fetch(key, use_cache=False, bindings=uses.get(key, ()))
        except LauncherError as exc:
            return exc
        except Exception as exc:  # a bug in a backend: report it without its text
            log.debug("unexpected error fetching %s", key, exc_info=True)
            return LauncherError(f"{key}: internal error ({exc.__class__.__name__}); rerun with --log-level debug")

    def _read_concurrently(self, remote: list[FetchKey], local: list[FetchKey],
                           uses: Mapping[FetchKey, tuple[str, ...]]) -> dict[FetchKey, Secret | LauncherError]:
        """Read ``remote`` keys on up to ``max_workers`` threads and ``local`` ones on this thread.

        Workers (the calling thread among them) take keys from one iterator until it is
        empty, and the caller joins them once. Why not ThreadPoolExecutor.map: a future per
        key and a wake-up of the caller per result cost about a third more CPU for 100 keys,
        which is what a start-up with many secrets waits for on a small machine. The helpers
        start on the remote keys at once; the caller reads the local ones, then joins them.
        """
        outcomes: dict[FetchKey, Secret | LauncherError] = {}
        pending = iter(remote)
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    key = next(pending, None)
                if key is None:
                    return
                outcomes[key] = self._read_one(key, uses)

        helpers = [threading.Thread(target=work, name=f"fetch-{i}", daemon=True)
                   for i in range(min(self.max_workers, len(remote)) - 1)]
        for thread in helpers:
            thread.start()
        for key in local:
            outcomes[key] = self._read_one(key, uses)
        work()
        for thread in helpers:
            thread.join()
        return outcomes

    def resolve(self, environ: Mapping[str, str], inline: bool = True, use_cache: bool = True) -> Resolution:
        """Resolve ``env``, inline references from ``environ`` and ``env_from``."""
        bindings = list(self.manifest.env)
        if inline:
            bindings += inline_bindings(environ, self.manifest)
        uses: dict[FetchKey, list[str]] = {}
        for binding in bindings:
            for ref in binding.refs:
                uses.setdefault(ref.fetch_key, []).append(binding.name)
        for entry in self.manifest.env_from:
            uses.setdefault(entry.ref.fetch_key, []).append(f"{entry.prefix}*")
        outcomes = self.fetch_all(uses, use_cache, {key: tuple(dict.fromkeys(names)) for key, names in uses.items()})
        results: list[BindingResult] = []
        values: dict[str, str] = {}
        for entry in self.manifest.env_from:  # lowest precedence first
            result, found = expand_env_from(entry, outcomes[entry.ref.fetch_key])
            results.append(result)
            values.update(found)
        for binding in bindings:
            result = evaluate(binding, outcomes)
            results.append(result)
            if result.value is not None:
                values[binding.name] = result.value
            else:
                values.pop(binding.name, None)
        return Resolution(
            results=tuple(results),
            values=values,
            files=frozenset(b.name for b in bindings if b.file),
            secrets={k: v for k, v in outcomes.items() if isinstance(v, Secret)},
            errors=tuple(r.error for r in results if r.error is not None),
            sources_used=frozenset(k.source for k in outcomes),
        )


def _read_from(src: Source, key: FetchKey) -> Secret:
    """One attempt at ``key``: a read, or a write of its request data (``Writing``)."""
    if not key.data:
        return src.fetch(key.path, key.version)
    if not isinstance(src, Writing):  # the manifest refuses such references: kept for sources built by hand
        raise ManifestError(f"{key}: source {key.source!r} takes no request data (?NAME=VALUE)")
    return src.write(key.path, dict(key.data))


def log_resolved(resolution: Resolution, started: float, then: str = "") -> None:
    """The start-up summary: how many variables, from which sources, how long it took.

    A debug line: at ``info`` a launcher that works prints nothing, so a prefixed
    command's stderr looks as if it ran alone (as with tini, dumb-init, op run).
    """
    elapsed = (time.monotonic() - started) * 1000
    count, sources = len(resolution.values), sorted(resolution.sources_used)
    log.debug(
        "resolved %d variable%s from %s in %.0f ms%s",
        count, "" if count == 1 else "s", ", ".join(sources) or "no source", elapsed, then,
        extra={"fields": {"variables": count, "sources": sources, "ms": round(elapsed, 1)}},
    )
