"""A hard time bound on one attempt at a backend, whatever the server does.

Socket timeouts bound each ``recv``, not a request: a server that drips one
byte a second never trips a 10 s read timeout, and one that stalls after the
headers holds a request for connect + read timeout per attempt. So the retry
runner (and the watcher, for its checks) wraps each attempt in ``bound(seconds)``:

- ``remaining()`` / ``cut(timeout)`` let a client shorten its timeouts to what
  is left, so a well-behaved stall ends on its own at the bound;
- every socket a client uses inside the bound is handed to ``watch(sock)``;
  one watchdog thread shuts those sockets down when the bound passes, which
  ends a blocked ``recv`` at once (the client sees a closed connection, and
  ``expired()`` tells it why).

The bound is per thread: the resolver's fetch threads each carry their own.
Bounds nest, and an inner one never extends an outer one.
"""

from __future__ import annotations

import heapq
import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import socket

# socket.SHUT_RDWR, without importing socket on a start-up that opens no connection.
_SHUT_RDWR = 2
T = TypeVar("T")


class OverdueError(Exception):
    """``within`` gave up: the bound passed before the call returned."""


class _Guard:
    """One bound: its end, the sockets used under it, whether it already fired."""

    __slots__ = ("fired", "lock", "sockets", "until")

    def __init__(self, until: float) -> None:
        self.until = until
        self.sockets: list[socket.socket] = []
        self.fired = False
        self.lock = threading.Lock()

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            try:
                sock.shutdown(_SHUT_RDWR)
            except OSError:
                pass  # already closed: nothing left to interrupt


class _Watchdog:
    """One daemon thread for the whole process, started on the first bound that holds a socket."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Guard]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, guard: _Guard) -> None:
        with self._cond:
            heapq.heappush(self._heap, (guard.until, next(self._order), guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        # Signals are for the supervisor's loop thread, which waits for them with sigtimedwait.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                until, _, guard = self._heap[0]
                delay = until - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
            if guard.sockets:  # ended bounds leave their guard here with no sockets
                guard.fire()


_watchdog = _Watchdog()
_local = threading.local()


@contextmanager
def bound(seconds: float | None) -> Iterator[None]:
    """Run the block under a hard bound ``seconds`` from now (None: no new bound).

    Relative, and measured on the real monotonic clock: callers with a fake
    clock of their own still get a real bound.
    """
    outer: _Guard | None = getattr(_local, "guard", None)
    until = None if seconds is None else time.monotonic() + max(0.0, seconds)
    if until is None or (outer is not None and outer.until <= until):
        yield
        return
    guard = _Guard(until)
    _local.guard = guard
    try:
        yield
    finally:
        _local.guard = outer
        with guard.lock:
            guard.sockets = []  # the watchdog finds nothing to shut down


def remaining() -> float | None:
    """Seconds left in this thread's bound; None outside any bound."""
    guard: _Guard | None = getattr(_local, "guard", None)
    if guard is None:
        return None
    return guard.until - time.monotonic()


def cut(timeout: float) -> float:
    """``timeout`` shortened to what is left of the bound (never below 1 ms)."""
    left = remaining()
    if left is None:
        return timeout
    return max(0.001, min(timeout, left))


def expired() -> bool:
    """True when this thread's bound has passed (a failure now is the bound's doing)."""
    guard: _Guard | None = getattr(_local, "guard", None)
    return guard is not None and (guard.fired or time.monotonic() >= guard.until)


def watch(sock: socket.socket | None) -> None:
    """Shut ``sock`` down when this thread's bound passes; no-op outside a bound."""
    guard: _Guard | None = getattr(_local, "guard", None)
    if guard is None or sock is None:
        return
    with guard.lock:
        if guard.fired:
            fire_now = True
        else:
            fire_now = False
            first = not guard.sockets
            guard.sockets.append(sock)
    if fire_now:
        try:
            sock.shutdown(_SHUT_RDWR)
        except OSError:
            pass
        return
    if first:
        _watchdog.arm(guard)


def within(call: Callable[[], T], name: str = "bounded-call") -> T:
    """``call()``, given up on when this thread's bound passes (``OverdueError``); plain outside a bound.

    For clients whose sockets cannot be handed to ``watch`` (botocore keeps its own pools,
    and its timeouts bound each ``recv``, not a request): the call runs on a daemon thread
    that is waited for until the bound only, and left to end at the client's own timeouts.
    What ``call`` raises is raised here, on the caller's thread.
    """
    left = remaining()
    if left is None:
        return call()
    outcome: list[tuple[T | None, BaseException | None]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((call(), None))
        except BaseException as exc:  # handed to the caller's thread, which maps it
            outcome.append((None, exc))
        done.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not done.wait(max(0.0, left)):
        raise OverdueError
    result, error = outcome[0]
    if error is not None:
        raise error
    return result  # type: ignore[return-value]
