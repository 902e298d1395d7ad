"""``Observing``: the observers of one command, made only once something asks to observe.

The command line hands every command one of these; a command nobody observes (no
``--audit``, no ``audit.path``, no metrics) never imports the rest of ``launcher.observe``.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import TYPE_CHECKING

from launcher.errors import LauncherError
from launcher.events import Broadcast, EventSink
from launcher.model.config import Manifest
from launcher.resolve.bindings import BindingResult

if TYPE_CHECKING:
    from launcher.observe.observers import Observers  # imported when something asks to observe


class Observing:
    """The observers of one command, made (``launcher.observe.observers.Observers``) only once
    something asks to observe: ``--audit`` / ``$LAUNCHER_AUDIT`` at once (so even a manifest that
    fails to load is audited), else the manifest's ``audit.path`` or metrics when ``open`` reads
    them. A command nobody observes never loads ``launcher.observe``; its events go nowhere."""

    def __init__(self, audit: str | None, reports_exit: bool) -> None:
        self.events = Broadcast()  # what the resolver and the rest tell; the real observers listen to it
        self._reports_exit = reports_exit
        self._real: Observers | None = self._make(audit) if audit else None
        self._reported: BaseException | None = None

    def _make(self, audit: str | None = None) -> Observers:
        from launcher.observe.observers import Observers

        return Observers(audit, reports_exit=self._reports_exit, events=self.events)

    @property
    def reported(self) -> BaseException | None:
        """A resolution failure already reported per binding (``binding_failure``)."""
        return self._reported

    def open(self, manifest: Manifest, metrics: str | None = None, *, serve: bool = False) -> EventSink:
        """Open what ``manifest`` asks for (see ``Observers.open``); the sink to pass on."""
        if self._real is None and (manifest.audit.path or (serve and (metrics or manifest.metrics.listen))):
            self._real = self._make()
        if self._real is not None:
            self._real.open(manifest, metrics, serve=serve)
        return self.events

    def binding_failure(self, results: Iterable[BindingResult], failure: LauncherError) -> None:
        self._reported = failure
        if self._real is not None:
            self._real.binding_failure(results, failure)

    def __enter__(self) -> Observing:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None) -> None:
        if self._real is not None:
            self._real.__exit__(kind, exc, tb)
