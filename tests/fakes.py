"""The suite's fakes, one of each: a clock the test moves, and a scripted backend.

Shipped once, as httpx ships its ``MockTransport``: tests of logic (retry, cache,
resolver, watcher, failover, the Python API) build them here instead of each
module keeping a copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from launcher import deadline
from launcher.clock import Clock
from launcher.errors import LauncherError, NotFoundError, TransientError
from launcher.sources.base import Lease, Secret

Outcome = Secret | LauncherError
Script = Mapping[str, Outcome] | Callable[[str], Outcome]


class ManualClock:
    """Monotonic time that moves only when the test moves it (``now``, ``advance``) or something sleeps on it.

    ``clock()`` is the ``Clock`` to hand to the code under test: its ``sleep`` moves
    this time (and records the wait), its ``random`` draws ``draw``. Calling the
    object itself reads the time, for code that takes a bare ``monotonic`` function.
    """

    def __init__(self, now: float = 1000.0, draw: float = 0.5) -> None:
        self.now = now
        self.draw = draw
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    __call__ = monotonic

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, random=lambda: self.draw, sleep=self.sleep)


class ScriptedSource:
    """A backend whose every answer is scripted, recording what it was asked; thread-safe.

    ``script``: path -> a ``Secret``, or an error to raise (a path not in it is 66), or a
    function of the path. ``versions``: path -> what ``current_version`` says (default:
    the scripted secret's version). ``renew``: a lease -> its renewal (None: it cannot
    be renewed; default: renewed for the same duration). Switches: ``down`` (every call
    fails as a refused connection), ``error`` (every call raises it), ``gate`` (every
    fetch waits for the event), ``barrier`` (every fetch waits for the others to reach
    it), ``local`` (read on the resolver's calling thread).

    Records: ``calls`` ("fetch PATH", "check PATH", "renew" in order), ``fetches``
    ((path, version) pairs), ``checks`` (paths), ``renewals`` (lease ids), ``budgets``
    (what was left of the deadline bound at each call), ``threads`` (names of the
    threads that fetched) and ``closed`` (how many times it was closed).
    """

    def __init__(self, name: str = "fake", script: Script | None = None, *,
                 versions: Callable[[str], str | None] | None = None, renew: Callable[[Lease], Lease | None] | None = None,
                 gate: threading.Event | None = None, barrier: threading.Barrier | None = None, local: bool | None = None) -> None:
        self.name = name
        self.script: Script = {} if script is None else script
        self.versions = versions
        self.renew = renew
        self.gate = gate
        self.barrier = barrier
        if local is not None:
            self.local = local
        self.down = False
        self.error: LauncherError | None = None
        self.calls: list[str] = []
        self.fetches: list[tuple[str, str | None]] = []
        self.checks: list[str] = []
        self.renewals: list[str] = []
        self.budgets: list[float | None] = []
        self.threads: set[str] = set()
        self.closed = 0
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ScriptedSource({self.name!r})"

    def fetch(self, path: str, version: str | None) -> Secret:
        with self.lock:
            self.fetches.append((path, version))
            self.threads.add(threading.current_thread().name)
        if self.barrier is not None:
            self.barrier.wait(timeout=10)  # breaks (and fails the test) unless all fetches overlap
        if self.gate is not None:
            self.gate.wait(10)
        self._call(f"fetch {path}", path)
        return self.outcome(path)

    def current_version(self, path: str) -> str | None:
        with self.lock:
            self.checks.append(path)
        self._call(f"check {path}", path)
        if self.versions is not None:
            return self.versions(path)
        return self.outcome(path).version

    def renew_lease(self, lease: Lease) -> Lease | None:
        with self.lock:
            self.renewals.append(lease.lease_id)
        self._call("renew", "")
        if self.renew is not None:
            return self.renew(lease)
        return Lease(lease.lease_id, lease.duration, True)

    def close(self) -> None:
        self.closed += 1

    def outcome(self, path: str) -> Secret:
        """The scripted answer for ``path`` (raised when it is an error)."""
        found = self.script(path) if callable(self.script) else self.script.get(path, NotFoundError(f"{self.name}://{path}: not found"))
        if isinstance(found, LauncherError):
            raise found
        return found

    def _call(self, what: str, path: str) -> None:
        with self.lock:
            self.calls.append(what)
            self.budgets.append(deadline.remaining())
        if self.down:
            raise TransientError(f"{self.name}://{path}: connection refused")
        if self.error is not None:
            raise self.error
