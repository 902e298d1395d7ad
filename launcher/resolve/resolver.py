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
from launcher.errors import LauncherError
from launcher.events import NOTHING, Event, EventSink
from launcher.model.config import Manifest, SourceConfig
from launcher.model.refs import FetchKey
from launcher.resolve.bindings import (
    BindingResult,
    binding_uses,
    env_from_name,
    evaluate,
    expand_env_from,
    inline_bindings,
    secret_fields,
    select,
)
from launcher.resolve.cache import TTLCache
from launcher.resolve.resolution import Resolution
from launcher.resolve.retry import call_with_retry
from launcher.resolve.rounds import BATCH_BOUND, BATCH_MIN, Reading, read_from, read_in_rounds
from launcher.sources.base import Secret, Source, renew_after
from launcher.sources.catalog import open_source, source_config

__all__ = [  # what the resolver's callers use, some of it from bindings.py and resolution.py
    "BATCH_BOUND", "BATCH_MIN", "BindingResult", "Resolution", "Resolver", "env_from_name", "inline_bindings", "log_resolved",
    "secret_fields", "select",
]

log = logging.getLogger(__name__)

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
                source = self._factory(config)
                if config.fallback is not None:
                    from launcher.resolve.failover import with_fallback  # only a manifest with a fallback pays for it

                    # With a ``fallback``, the source is NAME's wrapped with OTHER's (docs/operations/failover.md).
                    source = with_fallback(source, config, self.manifest, self.source, clock=self.clock, events=self.events,
                                           stop=self.stopping)
                self._sources[name] = source
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
            secret = call_with_retry(lambda: read_from(src, key), self.manifest.retry, self.clock, stop=self.stopping)
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

    def fetch_all(self, keys: Iterable[FetchKey], use_cache: bool = True,
                  uses: Mapping[FetchKey, tuple[str, ...]] | None = None) -> dict[FetchKey, Secret | LauncherError]:
        """Fetch distinct keys concurrently; every outcome is returned, none raised.

        ``uses``: the variables each key is read for (named in fetch events). The steps:
        what the cache holds; the reads other callers have under way, joined (single
        flight); the sources opened; the rest read in rounds (``launcher.resolve.rounds``:
        batches, concurrency, one retry line per source and round, all within
        ``retry.deadline``).
        """
        unique = list(dict.fromkeys(keys))
        outcomes: dict[FetchKey, Secret | LauncherError] = dict(self._cached(unique)) if use_cache else {}
        mine, theirs = self._claim([k for k in unique if k not in outcomes])
        try:
            self._open_sources(mine)
            outcomes.update(read_in_rounds(self._reading(), mine, uses or {}))
        finally:
            self._land(mine, outcomes)
        for key, flight in theirs.items():
            try:
                outcomes[key] = flight.outcome()
            except LauncherError as exc:
                outcomes[key] = exc
        return {k: outcomes[k] for k in unique}

    def _reading(self) -> Reading:
        def started(count: int) -> None:
            with self._lock:
                self.fetches += count

        return Reading(source=self.source, store=self._store, started=started, events=self.events, policy=self.manifest.retry,
                       clock=self.clock, stop=self.stopping, max_workers=self.max_workers)

    def _claim(self, keys: list[FetchKey]) -> tuple[list[FetchKey], dict[FetchKey, _Flight]]:
        """(keys this caller reads, flights of the keys another caller is reading: joined)."""
        mine: list[FetchKey] = []
        theirs: dict[FetchKey, _Flight] = {}
        with self._lock:
            for key in keys:
                flight = self._flights.get(key)
                if flight is None:
                    self._flights[key] = _Flight()
                    mine.append(key)
                else:
                    theirs[key] = flight
        return mine, theirs

    def _land(self, keys: list[FetchKey], outcomes: Mapping[FetchKey, Secret | LauncherError]) -> None:
        """End this caller's flights with their outcomes (an error when it never got one)."""
        with self._lock:
            flights = [(key, self._flights.pop(key)) for key in keys]
        for key, flight in flights:
            outcome = outcomes.get(key)
            if isinstance(outcome, Secret):
                flight.secret = outcome
            else:
                flight.error = outcome if outcome is not None else LauncherError(f"{key}: the read was interrupted")
            flight.done.set()

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
                pass  # reported for each of its keys by the round that reads it

    def resolve(self, environ: Mapping[str, str], inline: bool = True, use_cache: bool = True) -> Resolution:
        """Resolve ``env``, inline references from ``environ`` and ``env_from``."""
        bindings = list(self.manifest.bindings)  # env, then the env files' (Manifest.bindings)
        if inline:
            bindings += inline_bindings(environ, self.manifest)
        uses = binding_uses(bindings, self.manifest.env_from)
        outcomes = self.fetch_all(uses, use_cache, uses)
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
