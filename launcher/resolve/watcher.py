"""Rotation checks on a thread of their own; findings are posted to the supervisor.

For each distinct secret the watcher asks its source, every ``interval``
on a schedule of its own (see ``Tracked.phase``), for the current version as
cheaply as the backend allows
(``current_version``); a leased secret is renewed at 2/3 of its lease and
re-read once it cannot be renewed to full length, before 90 % of its life;
an issued secret (a certificate: ``Secret.expires_at``) is issued again at 2/3
of its lifetime, and after a failure again and again until it is (warned about
each time: the child keeps the old one, until it expires and beyond); any other
secret is re-read once it is older than ``cache.ttl``. References with request
data (a write) are never version-checked: nothing but the write itself is sent.
When something changed, the watcher re-resolves (only the changed keys are
fetched again) and posts the new resolution. It never touches the child.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from launcher import deadline
from launcher.clock import SYSTEM, Clock
from launcher.errors import LauncherError, NotFoundError, status_of
from launcher.events import NOTHING, Event, EventSink
from launcher.model.config import Manifest, WatchConfig
from launcher.model.durations import format_duration
from launcher.model.refs import FetchKey
from launcher.resolve.resolution import Resolution
from launcher.resolve.resolver import Resolver
from launcher.sources.base import RENEW_SHARE, Lease, Leasing, Secret, TokenHolding, Versioned

log = logging.getLogger(__name__)

TOKEN_MAINTENANCE_PERIOD = 1.0
# The longest one version check may take: a connect and a read timeout (5 s + 10 s).
CHECK_BOUND = 15.0


@dataclass
class Tracked:
    """What the watcher knows about one distinct secret."""

    key: FetchKey
    version: str | None
    read_at: float
    next_check: float
    # Checks fall on phase + k * interval: the phase is drawn once, uniformly over one
    # interval, and kept across rotations. Why not fresh jitter on every check (the old
    # +-10 %): that re-draws a fleet's load every period, and its busiest second ends up
    # 1.65-1.75x the mean; fixed phases keep the spread the fleet had at start (1.35x,
    # benchmarks/bench_fleet.py), and no drift can bunch watchers up again.
    phase: float
    lease: Lease | None = None
    lease_at: float = 0.0  # when the lease was obtained or last renewed
    issued_at: float = 0.0  # when the lease was first obtained
    full_duration: float = 0.0
    failures: int = 0
    missing: bool = False  # an optional secret that did not exist at the last read
    # An issued secret (a certificate) cannot be renewed, only issued again: it is due at
    # ``renew_at`` (2/3 of its lifetime, or the next attempt after a failure), neither by
    # version nor by ``cache.ttl``, and it ends at ``expires`` (both monotonic).
    expires: float | None = None
    renew_at: float = 0.0


@dataclass(frozen=True)
class Rotation:
    """Posted when a re-resolution is ready: the supervisor diffs and acts."""

    resolution: Resolution
    keys: tuple[FetchKey, ...]
    urgent: bool = False  # a lease is ending: act now, skipping debounce and splay


@dataclass(frozen=True)
class Outage:
    """Posted when a check fails (the supervisor applies ``on_error``)."""

    error: LauncherError


class Watcher:
    """Checks secrets for rotation; ``post`` receives ``Rotation`` and ``Outage`` events."""

    def __init__(
        self,
        manifest: Manifest,
        resolver: Resolver,
        environ: Mapping[str, str],
        post: Callable[[Rotation | Outage], None],
        inline: bool = True,
        clock: Clock | None = None,
        events: EventSink = NOTHING,
    ) -> None:
        self.manifest = manifest
        self.events = events
        self.watch = manifest.watch
        self.resolver = resolver
        self.environ = dict(environ)
        self.post = post
        self.inline = inline
        self.clock = clock or SYSTEM
        self.tracked: dict[FetchKey, Tracked] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage: str | None = None  # the source of the current outage, logged once
        self._next_token_check = 0.0

    # -- lifecycle ----------------------------------------------------------------

    def track(self, resolution: Resolution) -> None:
        """(Re)start tracking every unpinned secret of ``resolution``."""
        now = self.clock.monotonic()
        for key, secret in resolution.secrets.items():
            if key.version is not None:
                continue  # a pinned version never rotates
            old = self.tracked.get(key)
            if old is not None and old.version == secret.version and old.lease == secret.lease:
                continue
            self.tracked[key] = self._fresh(key, secret, now)
        for result in resolution.results:
            if result.status not in ("default", "optional"):
                continue
            for key in result.keys:
                known = self.tracked.get(key)
                if key.version is None and key not in resolution.secrets and (known is None or not known.missing):
                    self.tracked[key] = self._scheduled(key, None, now, missing=True)

    def _first_check(self, now: float) -> float:
        # A uniformly random point of the first interval, so a fleet of replicas
        # started together does not check (or restart) together.
        return now + self.watch.interval * self.clock.random()

    def _scheduled(self, key: FetchKey, version: str | None, now: float, missing: bool = False) -> Tracked:
        """Tracking of a key just read (or found missing); a key already tracked keeps its phase."""
        old = self.tracked.get(key)
        phase = old.phase if old is not None else self._first_check(now)
        t = Tracked(key, version, now, phase, phase, missing=missing)
        if old is not None:
            t.next_check = self._next_on_schedule(t, now)
        return t

    def _fresh(self, key: FetchKey, secret: Secret, now: float) -> Tracked:
        """Tracking of a just-read ``secret``, with its lease."""
        t = self._scheduled(key, secret.version, now)
        if secret.lease is not None:
            t.lease, t.lease_at, t.issued_at, t.full_duration = secret.lease, now, now, secret.lease.duration
        if secret.expires_at is not None:
            left = secret.expires_at - self.clock.wall()
            t.expires, t.renew_at = now + left, now + max(0.0, left) * RENEW_SHARE
        return t

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._thread.start()

    def stop(self, wait: float = 0.5) -> None:
        """Stop checking. A check stuck on a stalled server is not waited for beyond
        ``wait`` seconds: the thread is a daemon, and its request ends at its bound."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=wait)

    # -- schedule -----------------------------------------------------------------

    def _next_on_schedule(self, t: Tracked, now: float, failures: int = 0) -> float:
        """The first point of ``t``'s schedule after ``now``; after failures, 2**failures - 1
        more points are skipped (capped at 7), so a failing source is asked at 2x, 4x, 8x
        the interval, still on the schedule: when it recovers the fleet is as spread as before."""
        interval = self.watch.interval
        after = math.floor((now - t.phase) / interval) + 1
        return t.phase + (after + (1 << min(failures, 3)) - 1) * interval

    def due(self, t: Tracked) -> float:
        """When ``t`` next needs attention (a check, a lease renewal, a re-read or a new issue)."""
        if t.expires is not None:
            return t.renew_at
        ttl_due = t.read_at + self.manifest.cache.ttl
        if t.key.data:  # decrypted: no version to check, read again after cache.ttl
            return ttl_due
        if t.lease is not None:
            return min(ttl_due, self._lease_due(t)[0])
        return min(ttl_due, t.next_check)

    def _lease_due(self, t: Tracked) -> tuple[float, str]:
        assert t.lease is not None
        lease = t.lease
        if lease.renewable and lease.duration >= 0.99 * t.full_duration:
            return t.lease_at + lease.duration * 2 / 3, "renew"
        # Not renewable, or capped by its max TTL: the lease ends for good at lease_at +
        # duration, so fetch new credentials once 90 % of its whole life has passed.
        return t.issued_at + 0.9 * (t.lease_at + lease.duration - t.issued_at), "reread"

    def _run(self) -> None:
        # Signals are for the supervisor's loop thread (it waits for them with sigtimedwait);
        # threads this one starts (re-resolution) inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while not self._stop.is_set():
            wake = self.poll()
            self.clock.pause(max(0.01, wake - self.clock.monotonic()), self._stop)

    def poll(self) -> float:
        """One round: attend to every secret that is due; return when the next one is."""
        now = self.clock.monotonic()
        self._maintain_tokens(now)
        changed = [t for t in list(self.tracked.values()) if self.due(t) <= now and self._attend(t, now)]
        if changed:
            # A lease or a certificate that is ending: act now, skipping debounce and splay.
            self._reresolve([t.key for t in changed], urgent=any(t.lease is not None or t.expires is not None for t in changed))
        now = self.clock.monotonic()
        return min([self.due(t) for t in self.tracked.values()] + [now + TOKEN_MAINTENANCE_PERIOD])

    # -- checks -------------------------------------------------------------------

    def _attend(self, t: Tracked, now: float) -> bool:
        """Check one secret; True when it must be re-read."""
        if t.expires is not None:
            return t.renew_at <= now  # only ever issued again: no version to check
        try:
            if now - t.read_at >= self.manifest.cache.ttl:
                return True  # older than the cache TTL: re-read even if the version says unchanged
            if t.key.data:
                return False  # a write: never repeated to find out whether anything changed
            if t.lease is not None:  # a leased secret changes when its lease ends, not by version
                when, what = self._lease_due(t)
                return when <= now and (what == "reread" or not self._renew(t, now))
            if t.next_check > now:
                return False
            t.next_check = self._next_on_schedule(t, now)
            try:
                version = self._current_version(t.key)
            except NotFoundError:
                if not t.missing:
                    raise
                self._recovered(t)
                self._checked(t.key, None, "missing")
                log.debug("checked %s: still missing", t.key)
                return False
            self._recovered(t)
            self._checked(t.key, version, "ok")
            changed = t.missing or (version is not None and version != t.version)
            log.debug("checked %s: %s", t.key, "new version" if changed else "unchanged")
            return changed
        except LauncherError as exc:
            self._checked(t.key, None, status_of(exc))
            self._failed(t, exc, now)
            return False

    def _checked(self, key: FetchKey, version: str | None, outcome: str) -> None:
        self.events.emit(Event("check", source=key.source, ref=str(key), version=version, outcome=outcome))

    def _current_version(self, key: FetchKey) -> str | None:
        source = self.resolver.source(key.source)
        if not isinstance(source, Versioned):
            return None
        # One attempt, hard-bounded like a fetch's (a dripping server must not freeze the watcher).
        with deadline.bound(min(self.manifest.retry.deadline, CHECK_BOUND)):
            return source.current_version(key.path)

    def _renew(self, t: Tracked, now: float) -> bool:
        """Renew ``t``'s lease; False when it cannot be (so re-read it)."""
        assert t.lease is not None
        source = self.resolver.source(t.key.source)
        if not isinstance(source, Leasing) or not t.lease.renewable:
            return False
        with deadline.bound(min(self.manifest.retry.deadline, CHECK_BOUND)):
            lease = source.renew_lease(t.lease)
        if lease is None:
            return False
        log.debug("renewed the lease of %s for %.0fs", t.key, lease.duration)
        t.lease, t.lease_at = lease, now
        self.events.emit(Event("lease_renew", source=t.key.source, ref=str(t.key), expires_at=self.clock.wall() + lease.duration))
        return True

    def _maintain_tokens(self, now: float) -> None:
        if now < self._next_token_check:
            return
        self._next_token_check = now + TOKEN_MAINTENANCE_PERIOD
        for name in {t.key.source for t in self.tracked.values()}:
            source = self.resolver.source(name)
            if not isinstance(source, TokenHolding):
                continue
            try:
                with deadline.bound(min(self.manifest.retry.deadline, CHECK_BOUND)):
                    source.maintain_token()
                    ttl = source.token_ttl()
            except LauncherError as exc:
                log.warning("source %s: keeping its token alive failed: %s", name, exc)
                continue
            if ttl is not None:
                self.events.emit(Event("token", source=name, expires_at=self.clock.wall() + ttl))

    def _failed(self, t: Tracked, exc: LauncherError, now: float) -> None:
        t.failures += 1
        t.next_check = self._next_on_schedule(t, now, t.failures)
        if t.expires is not None:
            self._issue_failed(t, exc, now)
        if self._outage is None:
            self._outage = t.key.source
            log.warning("source %s is failing (%s); the child keeps its last good values", t.key.source, exc)
            self.events.emit(Event("outage", source=t.key.source, ref=str(t.key), outcome=status_of(exc)))
        self.post(Outage(exc))

    def _issue_failed(self, t: Tracked, exc: LauncherError, now: float) -> None:
        """A new certificate could not be issued: try again within a third of the life left (at least
        1 s apart, at most ``interval``), every ``interval`` once it has expired; warn each time."""
        assert t.expires is not None
        left = t.expires - now
        delay = max(1.0, min(self.watch.interval, left / 3)) if left > 0 else self.watch.interval
        t.renew_at = now + delay
        state = (f"the child keeps the current one, which expires in {format_duration(round(left, 1))}" if left > 0
                 else f"the current one expired {format_duration(round(-left, 1))} ago")
        log.warning("%s: could not issue a new certificate (%s); %s; trying again in %s", t.key, exc, state,
                    format_duration(round(delay, 1)))

    def _recovered(self, t: Tracked) -> None:
        if t.failures:
            t.failures = 0
        if self._outage == t.key.source:
            self._outage = None
            log.info("source %s is answering again", t.key.source)
            self.events.emit(Event("recovered", source=t.key.source))

    def _reresolve(self, keys: list[FetchKey], urgent: bool = False) -> None:
        """Fetch the changed keys again (others from the cache) and post the result."""
        for key in keys:
            self.resolver.cache.invalidate(key)
        resolution = self.resolver.resolve(self.environ, inline=self.inline)
        now = self.clock.monotonic()
        failure = resolution.failure()
        if failure is not None:
            for key in keys:
                self._failed(self.tracked[key], failure, now)
            return
        for key in keys:
            self._recovered(self.tracked[key])  # a lease or certificate had no check to say its source is back
            secret = resolution.secrets.get(key)
            if secret is not None:
                self.tracked[key] = self._fresh(key, secret, now)
        # Another secret may have been read again meanwhile (a certificate whose cache entry ended
        # just before its own turn came): track what the child will now have.
        self.track(resolution)
        self.post(Rotation(resolution, tuple(keys), urgent))


def next_check(keys: tuple[FetchKey, ...], secrets: Mapping[FetchKey, Secret], watch: WatchConfig) -> str:
    """When a watching launcher would next look at these secrets, for ``check``.

    One word, so the table stays easy to split: ``~60s`` (the interval),
    ``renew~20s`` (2/3 of a lease, or of what is left of a certificate's life),
    ``never`` (pinned) or ``-``.
    """
    if not keys:
        return "-"
    if all(k.version is not None for k in keys):
        return "never"
    expiries = [s.expires_at for k in keys if (s := secrets.get(k)) is not None and s.expires_at is not None]
    if expiries:
        return f"renew~{format_duration(round(max(0.0, min(expiries) - SYSTEM.wall()) * RENEW_SHARE))}"
    if all(k.data for k in keys):
        return "-"  # decrypted: there is no version to check (read again after cache.ttl)
    leases = [s.lease for k in keys if (s := secrets.get(k)) is not None and s.lease is not None]
    if leases:
        return f"renew~{format_duration(min(lease.duration for lease in leases) * 2 / 3)}"
    return f"~{format_duration(watch.interval)}"
