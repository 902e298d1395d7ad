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

from launcher import deadline
from launcher.clock import SYSTEM, Clock
from launcher.errors import LauncherError, NotFoundError, status_of
from launcher.events import NOTHING, Event, EventSink
from launcher.model.config import Manifest
from launcher.model.durations import format_duration
from launcher.model.refs import FetchKey
from launcher.record import record
from launcher.resolve.bindings import binding_uses, inline_bindings
from launcher.resolve.resolution import Resolution
from launcher.resolve.resolver import Resolver
from launcher.resolve.schedule import Tracked, lease_due
from launcher.sources.base import RENEW_SHARE, Leasing, Secret, TokenHolding, Versioned

log = logging.getLogger(__name__)

TOKEN_MAINTENANCE_PERIOD = 1.0
# The longest one version check may take: a connect and a read timeout (5 s + 10 s).
CHECK_BOUND = 15.0


@record
class Rotation:
    """Posted when a re-resolution is ready: the supervisor diffs and acts."""

    resolution: Resolution
    keys: tuple[FetchKey, ...]
    urgent: bool = False  # a lease is ending: act now, skipping debounce and splay


@record
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
        kept: str = "the last good values are kept",
    ) -> None:
        self.manifest = manifest
        self.kept = kept  # what an outage leaves in place, in the words of the face watching (the child, a handle)
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
        self._down: dict[str, float] = {}  # failing sources -> when each is next probed
        self._next_token_check = 0.0
        # The variables each secret is read for, named by check and renewal events (so that a
        # search of the audit trail for one variable finds them too).
        # The resolver has warned about this environment's misspelt references already.
        bindings = list(manifest.bindings) + (inline_bindings(self.environ, manifest, warn=False) if inline else [])
        self._uses = binding_uses(bindings, manifest.env_from)

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

    def _next_on_schedule(self, t: Tracked, now: float) -> float:
        """The first point of ``t``'s schedule after ``now`` (its phase plus whole intervals)."""
        interval = self.watch.interval
        after = math.floor((now - t.phase) / interval) + 1
        return t.phase + after * interval

    def due(self, t: Tracked) -> float:
        """When ``t`` next needs attention (a check, a lease renewal, a re-read or a new issue).

        An issued secret keeps its own schedule (``renew_at``, sooner as its end nears). Any
        other secret of a failing source is due at the source's next probe: a failing source
        is asked at most once per interval, whatever the number of its secrets.
        """
        if t.expires is not None:
            return t.renew_at
        probe = self._down.get(t.key.source)
        if probe is not None:
            return probe
        ttl_due = t.read_at + self.manifest.cache.ttl
        if t.key.data:  # decrypted: no version to check, read again after cache.ttl
            return ttl_due
        if t.lease is not None:
            return min(ttl_due, lease_due(t)[0])
        return min(ttl_due, t.next_check)

    def _run(self) -> None:
        # Signals are for the supervisor's loop thread (it waits for them with sigtimedwait);
        # threads this one starts (re-resolution) inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while not self._stop.is_set():
            wake = self.poll()
            self.clock.pause(max(0.01, wake - self.clock.monotonic()), self._stop)

    def poll(self) -> float:
        """One round: attend to every secret that is due; return when the next one is.

        A failing source is probed with one of its secrets; when it answers, every secret
        of that source is checked at once, so what rotated during the outage is re-read
        together and acted on once (docs/operations/rotation.md).
        """
        now = self.clock.monotonic()
        self._maintain_tokens(now)
        by_source: dict[str, list[Tracked]] = {}
        for t in list(self.tracked.values()):
            if self.due(t) <= now:
                by_source.setdefault(t.key.source, []).append(t)
        changed = [t for source, due in by_source.items() for t in self._attend_source(source, due, now)]
        if changed:
            # A lease or a certificate that is ending: act now, skipping debounce and splay.
            self._reresolve([t.key for t in changed], urgent=any(t.lease is not None or t.expires is not None for t in changed))
        now = self.clock.monotonic()
        return min([self.due(t) for t in self.tracked.values()] + [now + TOKEN_MAINTENANCE_PERIOD])

    # -- checks -------------------------------------------------------------------

    def _attend_source(self, source: str, due: list[Tracked], now: float) -> list[Tracked]:
        """Attend to the due secrets of one source; the ones to re-read."""
        # Certificates due to be issued again keep their own schedule, failing source or not.
        changed = [t for t in due if t.expires is not None and self._attend(t, now)]
        due = [t for t in due if t.expires is None]
        if not due:
            return changed
        if source not in self._down:
            return changed + self._attend_all(due, now)
        probe = due[0]
        if self._attend(probe, now, force=True):
            changed.append(probe)
        if source in self._down:
            return changed  # still failing: probed again in one interval
        # Answering again: every secret of it now (a lease only when due: it has no version to check).
        rest = [t for t in self.tracked.values() if t.key.source == source and t is not probe]
        return changed + self._attend_all(rest, now, force=True)

    def _attend_all(self, due: list[Tracked], now: float, force: bool = False) -> list[Tracked]:
        """Attend to secrets of one source in turn, until one fails (then the source is probed later);
        the ones to re-read. ``force``: check each now (a lease only when due: it has no version)."""
        changed = []
        for t in due:
            if self._attend(t, now, force=force and t.lease is None):
                changed.append(t)
            if t.key.source in self._down:
                break
        return changed

    def _attend(self, t: Tracked, now: float, force: bool = False) -> bool:
        """Check one secret (``force``: now, whatever its schedule says); True when it must be re-read."""
        if t.expires is not None:
            return t.renew_at <= now  # only ever issued again: no version to check
        try:
            if now - t.read_at >= self.manifest.cache.ttl:
                return True  # older than the cache TTL: re-read even if the version says unchanged
            if t.key.data:
                return False  # a write: never repeated to find out whether anything changed
            if t.lease is not None:  # a leased secret changes when its lease ends, not by version
                when, what = lease_due(t)
                return (when <= now or force) and (what == "reread" or not self._renew(t, now))
            if t.next_check > now and not force:
                return False
            t.next_check = self._next_on_schedule(t, now)
            try:
                version = self._current_version(t.key)
            except NotFoundError:
                if not t.missing:
                    raise
                self._recovered(t.key.source)
                self._checked(t.key, None, "missing")
                log.debug("checked %s: still missing", t.key)
                return False
            self._recovered(t.key.source)
            self._checked(t.key, version, "ok")
            changed = t.missing or (version is not None and version != t.version)
            log.debug("checked %s: %s", t.key, "new version" if changed else "unchanged")
            return changed
        except LauncherError as exc:
            self._checked(t.key, None, status_of(exc))
            self._failed(t, exc, now)
            return False

    def _checked(self, key: FetchKey, version: str | None, outcome: str) -> None:
        self.events.emit(Event("check", source=key.source, ref=str(key), version=version, bindings=self._uses.get(key, ()),
                               outcome=outcome))

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
        self._recovered(t.key.source)
        log.debug("renewed the lease of %s for %.0fs", t.key, lease.duration)
        t.lease, t.lease_at = lease, now
        self.events.emit(Event("lease_renew", source=t.key.source, ref=str(t.key), bindings=self._uses.get(t.key, ()),
                               expires_at=self.clock.wall() + lease.duration))
        return True

    def _maintain_tokens(self, now: float) -> None:
        if now < self._next_token_check:
            return
        self._next_token_check = now + TOKEN_MAINTENANCE_PERIOD
        for name in {t.key.source for t in self.tracked.values()} - set(self._down):  # a failing one is probed instead
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
        """A check or re-read of ``t`` failed: its source is failing, probed again in one interval
        (a certificate that could not be issued again keeps a schedule of its own)."""
        source = t.key.source
        if t.expires is not None:
            self._issue_failed(t, exc, now)
        if source not in self._down:
            log.warning("source %s is failing (%s); %s", source, exc, self.kept)
            self.events.emit(Event("outage", source=source, ref=str(t.key), outcome=status_of(exc)))
        self._down[source] = now + self.watch.interval
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

    def _recovered(self, source: str) -> None:
        """``source`` answered: if it was failing, it is not any more (said once)."""
        if self._down.pop(source, None) is not None:
            log.info("source %s is answering again", source)
            self.events.emit(Event("recovered", source=source))

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
            self._recovered(key.source)  # a lease or certificate had no check to say its source is back
            secret = resolution.secrets.get(key)
            if secret is not None:
                self.tracked[key] = self._fresh(key, secret, now)
        # Another secret may have been read again meanwhile (a certificate whose cache entry ended
        # just before its own turn came): track what the child will now have.
        self.track(resolution)
        self.post(Rotation(resolution, tuple(keys), urgent))
