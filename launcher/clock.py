"""The one time seam: every module that reads the time, sleeps or draws at random takes a ``Clock``.

Tests pass a ``Clock`` built from their own functions (a fake ``monotonic``
that only moves when they say so, a fixed ``random``); nothing else in the
launcher calls ``time`` or ``random`` for decisions. ``pause`` is the one way
to wait: it ends early when a stop event is set (the watcher shutting down),
with real time and fake time alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from launcher.record import record


def _uniform() -> float:
    """``random.random()``, imported when first drawn (most runs never draw)."""
    import random

    return random.random()


@record
class Clock:
    """Monotonic time, a uniform draw in [0, 1), sleeping, and wall-clock time (for audit lines)."""

    monotonic: Callable[[], float] = time.monotonic
    random: Callable[[], float] = _uniform
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], float] = time.time

    def pause(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait ``seconds``; True when ``stop`` was set (at once, or while waiting)."""
        if stop is None:
            self.sleep(seconds)
            return False
        if self.sleep is time.sleep:
            return stop.wait(seconds)
        self.sleep(seconds)  # a fake clock: its sleep moves its own time
        return stop.is_set()


SYSTEM = Clock()
