"""Retry: a pure backoff policy and a small runner with injected clock and sleep.

``next_delay`` is a pure function of the attempt number, the time spent and a
random draw, so it is tested as a table. Only ``TransientError`` is retried:
400/401/403/404 and their kin are final on the first answer.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from launcher.config import RetryConfig
from launcher.errors import TransientError, UnavailableError

T = TypeVar("T")


@dataclass(frozen=True)
class Clock:
    """The seams the runner needs; tests pass fakes."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = _random.random


def backoff(policy: RetryConfig, attempt: int, draw: float) -> float:
    """Delay before retry number ``attempt`` (1 = after the first failure).

    Exponential (``initial_delay * multiplier**(attempt-1)``, capped at
    ``max_delay``) with jitter: ``full`` draws from [0, d], ``equal`` from
    [d/2, d], ``none`` is exactly d. ``draw`` is uniform in [0, 1).
    """
    ceiling = min(policy.max_delay, policy.initial_delay * policy.multiplier ** (attempt - 1))
    if policy.jitter == "full":
        return ceiling * draw
    if policy.jitter == "equal":
        return ceiling / 2 + ceiling / 2 * draw
    return ceiling


def next_delay(policy: RetryConfig, attempt: int, elapsed: float, draw: float, retry_after: float | None = None) -> float | None:
    """Seconds to wait before the next attempt, or None to give up.

    Gives up after ``attempts`` tries, or when waiting would cross ``deadline``.
    A server's Retry-After is honoured as a lower bound on the wait.
    """
    if attempt >= policy.attempts:
        return None
    delay = backoff(policy, attempt, draw)
    if retry_after is not None:
        delay = max(delay, retry_after)
    if elapsed + delay >= policy.deadline:
        return None
    return delay


def call_with_retry(fn: Callable[[], T], policy: RetryConfig, clock: Clock | None = None) -> T:
    """Call ``fn`` until it succeeds or the policy gives up.

    Raises the last error as ``UnavailableError`` (69) once retries are spent;
    any non-transient ``LauncherError`` passes through at once.
    """
    clock = clock or Clock()
    start = clock.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except TransientError as exc:
            delay = next_delay(policy, attempt, clock.monotonic() - start, clock.random(), exc.retry_after)
            if delay is None:
                raise UnavailableError(f"{exc.message} (gave up after {attempt} attempt{'s' if attempt > 1 else ''})") from exc
            clock.sleep(delay)
