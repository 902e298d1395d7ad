"""What happened, told to whoever listens: the audit trail, the metrics, the Python API.

The resolver, the watcher, the supervisor and the sources ``emit`` an ``Event``
at each point that matters (a fetch, a version check, a rotation, a restart,
a login...); sinks (``audit.AuditLog``, ``metrics.Metrics``) turn events into
lines and numbers. An event names references, versions and variable names,
never a value, a token or a lease id. ``emit`` is called on whatever thread the
event happens on, and must not block for long: it is on the path of a fetch
or of the supervisor's loop. See docs/architecture.md, "Observability".

Kinds (``Event.kind``); those marked * are written to the audit trail:

    fetch*         a secret was read from its backend (not from the cache)
    check*         a cheap version check (watching)
    rotation*      the child's environment changed
    restart*       the child was stopped and started again (``reason``)
    signal*        a signal was sent to the child for a rotation (``reason``: its name)
    exit*          the launcher is leaving (``reason``: its exit code)
    login*         a source obtained a token
    lease_renew*   a lease was renewed (``expires_at``)
    lease_revoke*  a lease was revoked
    cert_issue*    a certificate was issued (``version``: its serial, ``expires_at``: its not_after)
    cert_renew*    a certificate was issued again for the same reference (serial, not_after)
    cert_revoke*   a certificate issued by this launcher was revoked at exit (serial, not_after)
    error*         a failure that ends the launcher or a check (``outcome``: its status word)
    failover*      a source did not answer and its fallback did (``source``: the fallback)
    recovery*      a source that failed over answers again
    child_started  a child runs (``child_pid``)
    child_exited   it is gone
    outage         a check failed: the child keeps its last good values
    recovered      checks succeed again
    token          a source's token expiry (``expires_at``)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from launcher.record import record

AUDITED = frozenset({
    "fetch", "check", "rotation", "restart", "signal", "exit", "login", "lease_renew", "lease_revoke", "error",
    "failover", "recovery", "cert_issue", "cert_renew", "cert_revoke",
})


@record
class Event:
    """One thing that happened; every field but ``kind`` is optional. Never holds a value."""

    kind: str
    source: str | None = None
    ref: str | None = None  # a reference or fetch key as text
    version: str | None = None
    bindings: tuple[str, ...] = ()  # the variables it concerns
    outcome: str = "ok"  # ok, or a check STATUS word (missing, denied, unavailable, invalid)
    child_pid: int | None = None
    reason: str | None = None  # why a restart happened, which signal, which exit code
    expires_at: float | None = None  # wall-clock time a lease or token ends


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class Nothing:
    """Listens to nothing (the default)."""

    def emit(self, event: Event) -> None:
        return None


NOTHING = Nothing()


class Broadcast:
    """Hands each event to every sink; a failing sink never stops the others (nor the caller)."""

    def __init__(self, sinks: Iterable[EventSink] = ()) -> None:
        self._sinks = list(sinks)
        self._lock = threading.Lock()

    def add(self, sink: EventSink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def emit(self, event: Event) -> None:
        for sink in list(self._sinks):
            try:
                sink.emit(event)
            except Exception:  # an observer's bug must not take the launcher down
                import logging

                logging.getLogger(__name__).debug("event sink failed", exc_info=True)
