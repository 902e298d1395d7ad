"""The observers of one command: the audit trail and the metrics (docs/operations/audit.md and docs/operations/metrics.md).

``Observers`` is built where a command starts and closed where it ends. The
audit file named on the command line (or by ``$LAUNCHER_AUDIT``) is opened
first, so that even a manifest that fails to load is audited; otherwise the
manifest's ``audit.path`` is opened once it is read. Metrics (``run`` only)
start listening before any secret is fetched, so a port in use is 78 at once.
Leaving the ``with`` block writes what only the command knows: the error
that ended it and the ``exit`` event with its code. Resolution failures are
audited per binding where they are found (``binding_failure``).
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from launcher.errors import LauncherError
from launcher.events import Broadcast, Event, EventSink
from launcher.model.config import Manifest
from launcher.model.refs import scheme_of
from launcher.resolve.bindings import BindingResult

if TYPE_CHECKING:
    from launcher.observe.audit import AuditLog  # imported when a trail is asked for
    from launcher.observe.metrics import MetricsServer  # prometheus_client is imported only when metrics are on

AUDIT_VARIABLE = "LAUNCHER_AUDIT"  # as the command line reads it (cli.AUDIT_VARIABLE)


class Observers:
    """The sinks of one command; use as ``with Observers(audit) as obs: events = obs.open(manifest)``.

    ``audit``: the path given by ``--audit`` or ``$LAUNCHER_AUDIT`` (it wins over the
    manifest's). ``reports_exit=False`` when the command reports its own ``exit``
    event on success (``run``: the supervisor does). Raises ``ManifestError`` (78)
    when the audit file cannot be opened or the metrics address cannot be bound.
    """

    def __init__(self, audit: str | None = None, *, reports_exit: bool = True, events: Broadcast | None = None) -> None:
        self.events = events if events is not None else Broadcast()
        self.reported: BaseException | None = None  # a resolution failure already audited per binding
        self.audit: AuditLog | None = None
        self.metrics_server: MetricsServer | None = None
        self._reports_exit = reports_exit
        if audit:
            self._add_audit(audit)

    def _add_audit(self, path: str) -> None:
        from launcher.observe.audit import AuditLog

        self.audit = AuditLog(path)
        self.events.add(self.audit)

    def open(self, manifest: Manifest, metrics: str | None = None, *, serve: bool = False) -> EventSink:
        """Open what ``manifest`` asks for and return the sink to pass on: its audit file
        (unless one was given); with ``serve`` (``run``), metrics when ``metrics`` (the
        option) or ``metrics.listen`` names an address. Other commands serve no metrics."""
        if self.audit is None and manifest.audit.path:
            self._add_audit(manifest.audit.path)
        listen = (metrics or manifest.metrics.listen) if serve else None
        if listen:
            from launcher.observe.metrics import Metrics, MetricsServer

            sink = Metrics()
            server = MetricsServer(sink, listen)
            self.events.add(sink)
            server.start()
            self.metrics_server = server
        return self.events

    def __enter__(self) -> Observers:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: types.TracebackType | None) -> None:
        try:
            code = None if exc is None else exit_code_of(exc)
            if exc is None:
                if self._reports_exit:
                    self.events.emit(Event("exit", reason="0"))
            elif code is not None:
                interrupted = isinstance(exc, KeyboardInterrupt)
                status = exc.status if isinstance(exc, LauncherError) else "ok" if interrupted else "invalid"
                if not (interrupted or exc is self.reported):  # a resolution failure is audited per binding where found
                    self.events.emit(Event("error", outcome=status, reason=str(code)))
                self.events.emit(Event("exit", outcome=status, reason=str(code)))
        finally:
            self.close()

    def binding_failure(self, results: Iterable[BindingResult], failure: LauncherError) -> None:
        """An ``error`` event for each binding that failed (its reference, never a value); ``failure``,
        the verdict about them, is then not audited again when it ends the command."""
        for r in results:
            if r.error is not None:
                source = r.keys[0].source if r.keys else scheme_of(r.ref)
                self.events.emit(Event("error", source=source, ref=r.ref, bindings=(r.name,), outcome=r.status,
                                       reason=str(r.error.exit_code)))
        self.reported = failure

    def close(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        if self.audit is not None:
            self.audit.close()


def exit_code_of(exc: BaseException) -> int | None:
    """The code the launcher exits with for ``exc`` (as ``cli.main`` decides), None for a clean exit."""
    if isinstance(exc, LauncherError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    code = getattr(exc, "exit_code", None)  # click's own exceptions (usage errors: 2)
    if isinstance(code, int):
        return code or None
    return 70 if isinstance(exc, Exception) else None


def api_audit(manifest: Manifest, environ: Mapping[str, str]) -> AuditLog | None:
    """The Python API's audit trail: ``$LAUNCHER_AUDIT``, else the manifest's ``audit.path``, else none."""
    from launcher.observe.audit import AuditLog

    path = environ.get(AUDIT_VARIABLE) or manifest.audit.path
    return AuditLog(path) if path else None
