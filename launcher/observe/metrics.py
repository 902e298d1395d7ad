"""Metrics and health of ``launcher run`` (docs/operations/metrics.md).

``Metrics`` is an ``events.EventSink``: ``emit`` only updates a few numbers
under a lock, so the supervisor's loop and the watcher never wait on a scrape.
``MetricsServer`` serves them over HTTP from a daemon thread of its own:
``/metrics`` in the Prometheus text format (rendered by ``prometheus_client``,
imported only here and only when metrics are on; ``secret-launcher[metrics]``),
and ``/healthz`` as JSON: 200 ``{"status": "ok"}`` while the child runs
(``"stale"`` while a backend is failing, and while an issued certificate in use
has expired: restarting the pod cannot help), 503
``{"status": "down"}`` while there is none. Labels name sources and
references, never a value.

Threads: the server's accept loop blocks in ``accept`` (no periodic wake-up);
each request is answered on a short-lived thread. An error of ``accept`` is
logged and backed off from, never the end of the server: a liveness probe must
not find a healthy child's launcher mute. All of them start with every
signal blocked, so a signal meant for the supervisor never lands on them.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from launcher.errors import ManifestError
from launcher.events import Event
from launcher.model.config import listen_address

log = logging.getLogger(__name__)

# An answered check or renewal, or a read, is a sign of life of the backend.
_ANSWERED = frozenset({"ok", "missing"})
# After a failed accept(): the first pause and the longest (seconds), doubling in between.
_ACCEPT_BACKOFF = (0.05, 1.0)


class Metrics:
    """What the metrics and ``/healthz`` show, kept up to date from events."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self.child_pid: int | None = None
        self.restarts: Counter[str] = Counter({"rotation": 0})  # by reason
        self.rotations = 0
        self.fetches: Counter[tuple[str, str]] = Counter()  # (source, outcome)
        self.checks: Counter[tuple[str, str]] = Counter()
        self.last_success: float | None = None
        self.lease_expiry: dict[str, float] = {}  # by ref
        self.token_expiry: dict[str, float] = {}  # by source
        self.read_at: dict[str, float] = {}  # by ref: when the value in use was read
        self.failing: set[str] = set()  # sources in an outage
        self.failovers: Counter[tuple[str, str]] = Counter()  # (the source that failed, its fallback that answered)
        self.issued: Counter[tuple[str, str]] = Counter()  # (source, cert_issue | cert_renew)
        self.cert_expiry: dict[str, float] = {}  # by ref: when the certificate in use expires

    def emit(self, event: Event) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            now = self._wall()
            with self._lock:
                handler(self, event, now)

    def _child_started(self, event: Event, now: float) -> None:
        self.child_pid = event.child_pid

    def _child_exited(self, event: Event, now: float) -> None:
        if self.child_pid == event.child_pid:
            self.child_pid = None

    def _restart(self, event: Event, now: float) -> None:
        self.restarts[event.reason or "rotation"] += 1

    def _rotation(self, event: Event, now: float) -> None:
        self.rotations += 1

    def _read(self, event: Event, now: float) -> None:
        """A fetch or a check: counted by source and outcome; an answer is a success of the watch."""
        (self.fetches if event.kind == "fetch" else self.checks)[(event.source or "", event.outcome)] += 1
        if event.outcome in _ANSWERED:
            self.last_success = now
        if event.kind == "fetch" and event.outcome == "ok":
            self.read_at[event.ref or ""] = now
            if event.expires_at is not None:
                self.lease_expiry[event.ref or ""] = event.expires_at

    def _lease_renew(self, event: Event, now: float) -> None:
        if event.expires_at is not None:
            self.lease_expiry[event.ref or ""] = event.expires_at
            self.last_success = now

    def _lease_revoke(self, event: Event, now: float) -> None:
        self.lease_expiry.pop(event.ref or "", None)

    def _token(self, event: Event, now: float) -> None:
        if event.expires_at is not None:
            self.token_expiry[event.source or ""] = event.expires_at

    def _outage(self, event: Event, now: float) -> None:
        self.failing.add(event.source or "")

    def _recovered(self, event: Event, now: float) -> None:
        self.failing.discard(event.source or "")

    def _failover(self, event: Event, now: float) -> None:
        self.failovers[(event.reason or "", event.source or "")] += 1

    def _issued(self, event: Event, now: float) -> None:
        self.issued[(event.source or "", event.kind)] += 1
        self.last_success = now
        if event.expires_at is not None:
            self.cert_expiry[event.ref or ""] = event.expires_at

    _handlers: ClassVar[dict[str, Callable[[Metrics, Event, float], None]]] = {
        "child_started": _child_started, "child_exited": _child_exited, "restart": _restart, "rotation": _rotation,
        "fetch": _read, "check": _read, "lease_renew": _lease_renew, "lease_revoke": _lease_revoke, "token": _token,
        "outage": _outage, "recovered": _recovered, "failover": _failover, "cert_issue": _issued, "cert_renew": _issued,
    }

    def health(self) -> tuple[int, dict[str, Any]]:
        """``/healthz``: (HTTP status, JSON body)."""
        now = self._wall()
        with self._lock:
            expired = sorted(ref for ref, at in self.cert_expiry.items() if at <= now)
            body: dict[str, Any] = {
                "status": "down" if self.child_pid is None else "stale" if self.failing or expired else "ok",
                "child_pid": self.child_pid,
                "restarts": sum(self.restarts.values()),
                "rotations": self.rotations,
                "last_success": self.last_success,
                "failing_sources": sorted(self.failing),
            }
            if self.cert_expiry:  # only where issued certificates are in use
                body["expired_certificates"] = expired
        return (503 if body["child_pid"] is None else 200), body

    def collect(self) -> list[Any]:
        """The metric families (``prometheus_client``'s collector protocol), taken at each scrape."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        now = self._wall()
        with self._lock:  # a copy, so that no lock is held while prometheus_client renders
            child_up, restarts, rotations = self.child_pid is not None, sorted(self.restarts.items()), self.rotations
            fetches, checks, last = sorted(self.fetches.items()), sorted(self.checks.items()), self.last_success
            failovers, issued, certs = sorted(self.failovers.items()), sorted(self.issued.items()), dict(self.cert_expiry)
            leases, tokens = dict(self.lease_expiry), dict(self.token_expiry)
            ages = {ref: max(0.0, now - at) for ref, at in self.read_at.items()}
        out: list[Any] = [GaugeMetricFamily("launcher_child_up", "1 while the child runs, 0 between a stop and a start",
                                            value=1 if child_up else 0)]
        family = CounterMetricFamily("launcher_child_restarts_total", "restarts of the child", labels=["reason"])
        for reason, count in restarts:
            family.add_metric([reason], count)
        out += [family, CounterMetricFamily("launcher_rotations_total", "new secret versions that changed the child's environment",
                                            value=rotations)]
        for name, what, counts in (("launcher_secret_fetches_total", "reads of a secret from its backend", fetches),
                                   ("launcher_secret_checks_total", "version checks while watching", checks)):
            family = CounterMetricFamily(name, what + ", by outcome (ok or a check status word)", labels=["source", "outcome"])
            for (source, outcome), count in counts:
                family.add_metric([source, outcome], count)
            out.append(family)
        family = CounterMetricFamily("launcher_failovers_total", "times a source stopped answering and its fallback took over",
                                     labels=["source", "fallback"])
        for (failed, fallback), count in failovers:
            family.add_metric([failed, fallback], count)
        out.append(family)
        out += _certificates(issued, certs)
        success = GaugeMetricFamily("launcher_watch_last_success_timestamp_seconds",
                                    "when a backend last answered a check, a renewal or a read (Unix time)")
        if last is not None:
            success.add_metric([], last)
        out += [
            success,
            _gauges("launcher_lease_expiry_timestamp_seconds", "when the lease of a dynamic secret ends (Unix time)", "ref", leases),
            _gauges("launcher_token_expiry_timestamp_seconds", "when a source's own token expires (Unix time)", "source", tokens),
            _gauges("launcher_secret_age_seconds", "seconds since the value in use was read from its backend", "ref", ages),
        ]
        return out


def _certificates(issued: list[tuple[tuple[str, str], int]], expiry: dict[str, float]) -> list[Any]:
    """Certificates issued and renewed (counters by source), when each in use expires, and the soonest."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    out: list[Any] = []
    for kind, name, what in (("cert_issue", "launcher_certificate_issues_total", "certificates issued (first of a reference)"),
                             ("cert_renew", "launcher_certificate_renewals_total", "certificates issued again before expiry")):
        family = CounterMetricFamily(name, what, labels=["source"])
        for (source, counted), count in issued:
            if counted == kind:
                family.add_metric([source], count)
        out.append(family)
    out.append(_gauges("launcher_certificate_expiry_timestamp_seconds", "when the certificate in use expires (Unix time)",
                       "ref", expiry))
    soonest = GaugeMetricFamily("launcher_certificate_next_expiry_timestamp_seconds",
                                "when the first certificate in use expires (Unix time)")
    if expiry:
        soonest.add_metric([], min(expiry.values()))
    out.append(soonest)
    return out


def _gauges(name: str, documentation: str, label: str, values: dict[str, float]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``listen`` (``HOST:PORT``; a bare port is loopback).

    The socket is bound here: ``ManifestError`` (78) when the address is in use
    or cannot be bound, or when ``prometheus_client`` is not installed.
    """

    def __init__(self, metrics: Metrics, listen: str) -> None:
        try:
            from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        except ImportError:
            raise ManifestError("metrics need prometheus_client, which is not installed "
                                "(pip install 'secret-launcher[metrics]')") from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics)
        try:
            host, port = listen_address(listen)
        except ValueError as exc:
            raise ManifestError(f"metrics: {exc}") from None
        handler = type("Handler", (_Handler,), {
            "health": staticmethod(metrics.health),
            "render": staticmethod(lambda: generate_latest(registry)),
            "content_type": CONTENT_TYPE_LATEST,
        })
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            server_class = type("Server", (_Server,), {"address_family": family})
            self._server: ThreadingHTTPServer = server_class((host, port), handler)
        except OSError as exc:
            cause = (exc.strerror or str(exc)).lower()
            raise ManifestError(f"metrics: cannot listen on {listen} ({cause})") from None
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def start(self) -> None:
        """Serve from a daemon thread, started with every signal blocked (it inherits the mask)."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._thread = threading.Thread(target=self._serve, name="metrics", daemon=True)
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _serve(self) -> None:
        """Accept until ``close``. An error of ``accept`` (out of descriptors, a connection
        aborted before it was taken, out of memory) never ends the server: it is logged
        once per spell of failures, and accepting resumes after a back-off (the refused
        connection stays queued, so ``accept`` would fail again at once)."""
        server = self._server
        pause = _ACCEPT_BACKOFF[0]
        failing = False
        while not self._closing.is_set():
            try:
                request, address = server.get_request()  # blocks: no wake-up while nobody scrapes
            except OSError as exc:
                if self._closing.is_set():
                    return
                if not failing:
                    log.warning("metrics: accepting a connection failed (%s); serving again in a moment",
                                (exc.strerror or str(exc)).lower())
                    failing = True
                self._closing.wait(pause)
                pause = min(pause * 2, _ACCEPT_BACKOFF[1])
                continue
            if failing:
                log.info("metrics: accepting connections again")
                failing, pause = False, _ACCEPT_BACKOFF[0]
            try:
                server.process_request(request, address)  # a thread per request (ThreadingMixIn)
            except Exception:  # no thread to be had: drop this one connection, keep serving
                server.shutdown_request(request)

    def close(self) -> None:
        """Stop accepting (``shutdown`` wakes the blocked ``accept``) and close the socket."""
        self._closing.set()
        try:
            self._server.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # listen(2)'s backlog (socketserver's default is 5): a burst of scrapes and probes
    # beyond it waits for SYN retransmits, whole seconds each.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A scraper that went away mid-answer: nothing to report (the default prints a traceback)."""
        return None


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # a client that stalls is dropped
    health: Callable[[], tuple[int, dict[str, Any]]]
    render: Callable[[], bytes]
    content_type: str

    def do_GET(self) -> None:  # http.server calls do_<METHOD>
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, self.render(), self.content_type)
        elif path == "/healthz":
            status, body = self.health()
            self._answer(status, json.dumps(body).encode() + b"\n", "application/json")
        else:
            self._answer(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # requests are not logged: a scrape every few seconds would drown the log
