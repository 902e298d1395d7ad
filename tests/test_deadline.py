"""The hard bound on one attempt (launcher.deadline): real sockets, a real watchdog."""

from __future__ import annotations

import socket
import time

from launcher import deadline
from tests.helpers import wait_for


def test_a_blocked_recv_ends_at_the_bound() -> None:
    """A peer that never answers (or drips) cannot hold a read past the bound."""
    ours, theirs = socket.socketpair()
    try:
        started = time.monotonic()
        with deadline.bound(0.3):
            deadline.watch(ours)
            assert ours.recv(1) == b""  # shut down by the watchdog: EOF, not a hang
            assert deadline.expired()
        assert 0.25 <= time.monotonic() - started < 2.0
    finally:
        ours.close()
        theirs.close()


def test_a_socket_used_after_the_bound_ended_is_left_alone() -> None:
    ours, theirs = socket.socketpair()
    try:
        with deadline.bound(0.1):
            deadline.watch(ours)
        # The watchdog wakes at the old bound's end and finds the bound over: nothing to shut down.
        ended = time.monotonic() + 0.1
        wait_for(lambda: time.monotonic() > ended + 0.3, timeout=5, what="the old bound's end to pass")
        theirs.sendall(b"y")
        ours.settimeout(2)
        assert ours.recv(1) == b"y"
    finally:
        ours.close()
        theirs.close()


def test_bounds_nest_and_an_inner_one_never_extends_the_outer() -> None:
    assert deadline.remaining() is None
    assert deadline.cut(10.0) == 10.0
    with deadline.bound(5.0):
        with deadline.bound(60.0):
            left = deadline.remaining()
            assert left is not None and left <= 5.0
            assert deadline.cut(10.0) <= 5.0
        with deadline.bound(1.0):
            left = deadline.remaining()
            assert left is not None and left <= 1.0
    assert deadline.remaining() is None
