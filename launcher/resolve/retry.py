"""Retry: a pure backoff policy and a small runner with injected clock and sleep.

``next_delay`` is a pure function of the attempt number, the time spent and a
random draw, so it is tested as a table. Only ``TransientError`` is retried:
400/401/403/404 and their kin are final on the first answer.

``retry.deadline`` is a hard bound: every attempt runs under
``launcher.deadline.bound``, so its requests' timeouts are cut to what is left
and a server that stalls or drips cannot hold an attempt past it. Each failed
attempt that will be retried logs one WARNING line (what failed, where, why,
and when the next attempt comes).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import TypeVar

from launcher import deadline
from launcher.clock import SYSTEM, Clock
from launcher.errors import TransientError, UnavailableError
from launcher.model.config import RetryConfig

T = TypeVar("T")
log = logging.getLogger(__name__)

# An attempt that would start with less than this left before the deadline is not made.
LEAST_ATTEMPT = 0.05


def backoff(policy: RetryConfig, attempt: int, draw: float) -> float:
    """Delay before retry number ``attempt`` (1 = after the first failure).

    Exponential (``initial_delay * multiplier**(attempt-1)``, capped at
    ``max_delay``) with jitter: ``full`` draws from [0, d], ``equal`` from
    [d/2, d], ``none`` is exactly d. ``draw`` is uniform in [0, 1).
    """
    ceiling = max(0.0, policy.initial_delay)
    if ceiling > 0 and policy.multiplier > 1:
        # Compared in logarithms: multiplier**(attempt-1) overflows a float after about a
        # thousand attempts, and a "retry for a day" policy reaches that.
        steps_to_cap = math.log(max(policy.max_delay, 1e-9) / ceiling) / math.log(policy.multiplier)
        ceiling = policy.max_delay if attempt - 1 >= steps_to_cap else ceiling * policy.multiplier ** (attempt - 1)
    ceiling = min(ceiling, policy.max_delay)
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


def call_with_retry(fn: Callable[[], T], policy: RetryConfig, clock: Clock | None = None,
                    stop: threading.Event | None = None) -> T:
    """Call ``fn`` until it succeeds or the policy gives up.

    Raises the last error as ``UnavailableError`` (69) once retries are spent
    or the deadline has passed; any non-transient ``LauncherError`` passes
    through at once. ``stop``, when set, ends the wait between attempts early
    (the watcher is shutting down) and gives up.
    """
    clock = clock or SYSTEM
    start = clock.monotonic()
    attempt = 0
    cause: TransientError | None = None  # the last failure that said what is wrong
    while True:
        attempt += 1
        try:
            with deadline.bound(policy.deadline - (clock.monotonic() - start)):
                return fn()
        except TransientError as exc:
            elapsed = clock.monotonic() - start
            # An attempt cut short by the deadline says only that time ran out; the
            # one before it said why the server was not answering, which is the news.
            if cause is None or elapsed < policy.deadline:
                cause = exc
            delay = next_delay(policy, attempt, elapsed, clock.random(), exc.retry_after)
            if delay is not None and policy.deadline - (elapsed + delay) < LEAST_ATTEMPT:
                delay = None  # too little time would be left for the attempt to get an answer
            if delay is None or (stop is not None and stop.is_set()):
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                raise UnavailableError(f"{cause.message} (gave up after {tries} in {elapsed:.1f}s)") from exc
            log.warning("%s; retry %d/%d in %.1fs", exc.message, attempt + 1, policy.attempts, delay,
                        extra={"fields": {"attempt": attempt, "next_attempt_in": round(delay, 3)}})
            if clock.pause(delay, stop):
                raise UnavailableError(f"{cause.message} (stopped while retrying)") from exc
