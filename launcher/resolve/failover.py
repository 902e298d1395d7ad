"""Failover: what a source cannot answer because it is unavailable, its ``fallback`` answers.

``sources.NAME.fallback: OTHER`` (docs/operations/failover.md). ``FailoverSource`` wraps
NAME's opened source and OTHER's (itself a ``FailoverSource`` in a chain) and is
what the resolver and the watcher use under NAME:

- Only unavailability (69) fails over. 66, 77 and 78 are NAME's answer and pass through.
- The budget: a read gets what is left of the bound it runs under (``retry.deadline``
  for a resolution, ``min(retry.deadline, 15s)`` for a watcher check). NAME's attempts
  (its retry policy for a fetch; one attempt for a version check or a probe) get half
  of it; OTHER gets everything left after that, the whole of it while NAME is held
  off. Each link of a chain splits what it is given the same way, and the error that
  reaches the resolver is final (never retried again), so the whole stays within the bound.
- Holding off: after a failover NAME is not asked for ``fallback_hold``; then the
  first read after it probes NAME with one attempt (other reads meanwhile go to
  OTHER). An answer, any answer but unavailability, is a recovery; otherwise NAME is
  held off again. Failover and recovery are one WARNING line and one event each.
- Leases stay where they were issued: a lease from OTHER is renewed at OTHER.
- A secret OTHER answered says so (``Secret.answered_by``: OTHER, or the link of a
  chain that answered), so ``check`` can show it.
- Versions of two sources are not comparable: when a version check is answered by
  another source than the one that answered the last read of that path, the check
  reports a version never seen, so the watcher re-reads once and the supervisor
  compares values (a change of source alone restarts nothing).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from launcher import deadline
from launcher.clock import SYSTEM, Clock
from launcher.errors import LauncherError, ManifestError, UnavailableError
from launcher.events import NOTHING, Event, EventSink
from launcher.model.config import Manifest, RetryConfig, SourceConfig
from launcher.model.durations import format_duration
from launcher.model.fallback import cycle_of
from launcher.model.refs import FetchKey
from launcher.resolve.retry import call_with_retry
from launcher.sources.base import Batching, Lease, Leasing, Local, Secret, Source, TokenHolding, Versioned, Writing

T = TypeVar("T")
log = logging.getLogger(__name__)

PRIMARY_SHARE = 0.5  # of a read's budget, for the source's own attempts; its fallback gets the rest


def with_fallback(source: Source, config: SourceConfig, manifest: Manifest, open_source: Callable[[str], Source], *,
                  clock: Clock = SYSTEM, events: EventSink = NOTHING, stop: threading.Event | None = None) -> Source:
    """``source`` itself without a fallback; else wrapped, with OTHER opened by ``open_source``.

    Raises ``ManifestError`` (78) for a fallback the manifest reader would have
    refused (a ``Manifest`` built in code), before anything could loop.
    """
    if config.fallback is None:
        return source
    cycle = cycle_of(manifest.sources, config.name) if config.name in manifest.sources else None
    if cycle is not None or config.fallback not in manifest.sources:
        source.close()
        problem = f"fallback cycle: {' -> '.join(cycle)}" if cycle else f"unknown source {config.fallback!r}"
        raise ManifestError(problem, field=f"sources.{config.name}.fallback")
    try:
        fallback = open_source(config.fallback)
    except BaseException:
        source.close()
        raise
    return FailoverSource(source, fallback, hold=config.fallback_hold, retry=manifest.retry, clock=clock, events=events, stop=stop)


class FailoverSource:
    """NAME's source with OTHER behind it. A ``Source`` with every capability (``Versioned``,
    ``Leasing``, ``TokenHolding``), each delegated to the source concerned; a capability
    neither has answers as its absence would (no version, no renewal, no token).

    Raises what the answering source raises; an ``UnavailableError`` naming both
    when neither answers. Thread-safe. ``close`` closes NAME's source only: OTHER
    is the resolver's, under its own name.
    """

    def __init__(self, primary: Source, fallback: Source, *, hold: float, retry: RetryConfig, clock: Clock = SYSTEM,
                 events: EventSink = NOTHING, stop: threading.Event | None = None) -> None:
        self.name = primary.name
        self.primary, self.fallback = primary, fallback
        self.local = all(isinstance(s, Local) and s.local for s in (primary, fallback))  # read on the calling thread
        self.hold, self.retry, self.clock, self.events, self.stop = hold, retry, clock, events, stop
        self._lock = threading.Lock()
        self._held_until: float | None = None  # set while failed over: NAME is skipped until then, then probed
        self._probing = False  # one caller is probing NAME; the others go to OTHER meanwhile
        self._fallback_used = False
        self._issuers: dict[str, Source] = {}  # lease id -> OTHER, for the leases OTHER issued (ids are never shown)
        self._answered: dict[str, Source] = {}  # path -> the source that answered the last read of its latest version

    def __repr__(self) -> str:
        return f"FailoverSource({self.primary!r} -> {self.fallback!r})"

    @property
    def failed_over(self) -> bool:
        with self._lock:
            return self._held_until is not None

    # -- Source -------------------------------------------------------------------

    def fetch(self, path: str, version: str | None) -> Secret:
        secret, by = self._ask(FetchKey(self.name, path, version), lambda s: s.fetch(path, version), self.retry.attempts)
        secret = _answered(secret, by, self.fallback)
        with self._lock:
            if version is None:
                self._answered[path] = by
            if secret.lease is not None and by is self.fallback:
                self._issuers[secret.lease.lease_id] = by
        return secret

    def write(self, path: str, data: Mapping[str, str]) -> Secret:
        """A write of request data (``Writing``), failed over as a fetch is (a DR Vault issues as well)."""

        def write(source: Source) -> Secret:
            if not isinstance(source, Writing):
                raise ManifestError(f"{self.name}://{path}: source {source.name!r} takes no request data")
            return source.write(path, data)

        secret, _ = self._ask(FetchKey(self.name, path, None, tuple(sorted(data.items()))), write, self.retry.attempts)
        return secret

    def close(self) -> None:
        self.primary.close()

    def read_many(self, items: Sequence[tuple[str, str | None]], within: float) -> dict[tuple[str, str | None], Secret]:
        """A batch from the source in use (``Batching``): NAME's while it answers, OTHER's while NAME
        is held off. Best effort, as every batch: what it leaves out is read by ``fetch``, which
        fails over with its own budget, so a batch itself never fails over (nor probes NAME)."""
        with self._lock:
            held = self._held_until is not None
        source = self.fallback if held else self.primary
        if not isinstance(source, Batching):
            return {}
        found = {item: _answered(secret, source, self.fallback) for item, secret in source.read_many(items, within).items()}
        with self._lock:
            for (path, version), secret in found.items():
                if version is None:
                    self._answered[path] = source
                if secret.lease is not None and source is self.fallback:
                    self._issuers[secret.lease.lease_id] = source
        return found

    # -- capabilities -------------------------------------------------------------

    def current_version(self, path: str) -> str | None:
        """The answering source's version; one never seen when the answering source changed."""

        def ask(source: Source) -> str | None:
            return source.current_version(path) if isinstance(source, Versioned) else None

        version, by = self._ask(FetchKey(self.name, path), ask, 1)
        with self._lock:
            last = self._answered.get(path, by)
        if version is not None and last is not by:
            return f"{version}@{by.name}"
        return version

    def renew_lease(self, lease: Lease) -> Lease | None:
        """Renew ``lease`` where it was issued; never elsewhere (a lease lives on its server)."""
        with self._lock:
            issuer = self._issuers.get(lease.lease_id, self.primary)
        renewed = issuer.renew_lease(lease) if isinstance(issuer, Leasing) else None
        if issuer is not self.primary:
            with self._lock:
                self._issuers.pop(lease.lease_id, None)
                if renewed is not None:
                    self._issuers[renewed.lease_id] = issuer
        return renewed

    def maintain_token(self) -> None:
        """Keep NAME's token alive (not while it is held off) and OTHER's once OTHER has been used."""
        with self._lock:
            sources = [s for s, due in ((self.primary, self._held_until is None), (self.fallback, self._fallback_used)) if due]
        for source in sources:
            if isinstance(source, TokenHolding):
                source.maintain_token()

    def token_ttl(self) -> float | None:
        """NAME's token's; None while NAME is held off (it is not asked then)."""
        if self.failed_over or not isinstance(self.primary, TokenHolding):
            return None
        return self.primary.token_ttl()

    # -- routing ------------------------------------------------------------------

    def _ask(self, key: FetchKey, call: Callable[[Source], T], attempts: int) -> tuple[T, Source]:
        """``call`` answered by NAME, else by OTHER, within what is left of the current bound."""
        budget = deadline.remaining()
        with deadline.bound(None if budget is not None else self.retry.deadline):
            budget = self.retry.deadline if budget is None else max(0.0, budget)
            route = self._route()
            cause: UnavailableError | None = None
            if route != "fallback":
                try:
                    answer = self._attempts(lambda: call(self.primary), attempts if route == "primary" else 1, budget * PRIMARY_SHARE)
                except UnavailableError as exc:
                    if self.stop is not None and self.stop.is_set():
                        self._end_probe(route)
                        raise  # leaving: nobody waits for an answer
                    cause = exc
                    self._failed(key, exc)
                except LauncherError:
                    self._answered_again(route)  # 66, 77, 78: NAME's answer, never failed over
                    raise
                except BaseException:
                    self._end_probe(route)
                    raise
                else:
                    if answer is None:  # "cannot tell" (a version check on a leased path): no request, no proof
                        self._end_probe(route)
                    else:
                        self._answered_again(route)
                    return answer, self.primary
            with self._lock:
                self._fallback_used = True
            try:
                answer = self._attempts(lambda: call(self.fallback), attempts, max(0.0, deadline.remaining() or 0.0))
            except UnavailableError as exc:
                why = cause.message if cause is not None else f"{key}: {self.name} is held off after failing"
                raise UnavailableError(f"{why}; fallback {self.fallback.name}: {exc.message}") from exc
            return answer, self.fallback

    def _attempts(self, fn: Callable[[], T], attempts: int, budget: float) -> T:
        policy = dataclasses.replace(self.retry, attempts=attempts, deadline=budget)
        return call_with_retry(fn, policy, self.clock, stop=self.stop)

    def _route(self) -> str:
        """``primary`` (NAME in use), ``probe`` (this caller asks NAME once after the hold) or ``fallback``."""
        with self._lock:
            if self._held_until is None:
                return "primary"
            if self._probing or self.clock.monotonic() < self._held_until:
                return "fallback"
            self._probing = True
            return "probe"

    def _end_probe(self, route: str) -> None:
        if route == "probe":
            with self._lock:
                self._probing = False

    def _failed(self, key: FetchKey, exc: UnavailableError) -> None:
        """NAME did not answer ``key``: hold it off (again); the first time, say so."""
        with self._lock:
            first = self._held_until is None
            self._held_until = self.clock.monotonic() + self.hold
            self._probing = False
        hold = format_duration(self.hold)
        if not first:
            log.debug("source %s still unavailable; asking %s for %s more", self.name, self.fallback.name, hold)
            return
        log.warning("source %s is unavailable, failing over to %s (%s is tried again in %s): %s",
                    self.name, self.fallback.name, self.name, hold, exc.message,
                    extra={"fields": {"source": self.name, "fallback": self.fallback.name, "ref": str(key)}})
        self.events.emit(Event("failover", source=self.fallback.name, ref=str(key), reason=self.name))

    def _answered_again(self, route: str) -> None:
        """NAME answered a probe (a value, or 66, 77, 78: it is up either way): it is in use again."""
        if route != "probe":
            return
        with self._lock:
            self._held_until, self._probing = None, False
        log.warning("source %s answers again; reads go back to it from %s", self.name, self.fallback.name,
                    extra={"fields": {"source": self.name, "fallback": self.fallback.name}})
        self.events.emit(Event("recovery", source=self.name))


def _answered(secret: Secret, by: Source, fallback: Source) -> Secret:
    """``secret`` marked as answered by ``fallback`` when it did (a chain's deeper link keeps its own mark)."""
    if by is not fallback or secret.answered_by is not None:
        return secret
    return dataclasses.replace(secret, answered_by=fallback.name)
