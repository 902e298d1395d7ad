"""Retry: the pure backoff policy as a table, the runner with a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.model.config import RetryConfig
from launcher.resolve.retry import backoff, call_with_retry, next_delay
from tests.fakes import ManualClock

POLICY = RetryConfig(attempts=4, initial_delay=1.0, max_delay=32.0, multiplier=2.0, jitter="none", deadline=60.0)


@pytest.mark.parametrize(
    ("jitter", "attempt", "draw", "delay"),
    [
        ("none", 1, 0.3, 1.0),
        ("none", 2, 0.3, 2.0),
        ("none", 3, 0.3, 4.0),
        ("none", 6, 0.3, 32.0),
        ("none", 10, 0.3, 32.0),  # capped at max_delay
        ("full", 1, 0.0, 0.0),
        ("full", 3, 0.5, 2.0),
        ("full", 10, 0.25, 8.0),
        ("equal", 1, 0.0, 0.5),
        ("equal", 3, 0.5, 3.0),
        ("equal", 10, 0.999, 31.984),
    ],
)
def test_backoff(jitter: str, attempt: int, draw: float, delay: float) -> None:
    policy = RetryConfig(initial_delay=1.0, max_delay=32.0, multiplier=2.0, jitter=jitter)
    assert backoff(policy, attempt, draw) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("attempt", "elapsed", "retry_after", "delay"),
    [
        (1, 0.0, None, 1.0),
        (3, 0.0, None, 4.0),
        (4, 0.0, None, None),  # four attempts made: give up
        (5, 0.0, None, None),
        (1, 0.0, 7.0, 7.0),  # Retry-After is a lower bound
        (3, 0.0, 2.0, 4.0),
        (2, 58.0, None, None),  # 58 + 2 would reach the 60 s deadline
        (2, 50.0, None, 2.0),
        (1, 0.0, 90.0, None),  # a Retry-After beyond the deadline: give up now
    ],
)
def test_next_delay(attempt: int, elapsed: float, retry_after: float | None, delay: float | None) -> None:
    assert next_delay(POLICY, attempt, elapsed, 0.5, retry_after) == delay


class Script:
    """A callable that raises the scripted errors in turn, then returns 'ok'."""

    def __init__(self, *outcomes: LauncherError, cost: float = 0.0, clock: ManualClock | None = None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.cost = cost
        self.clock = clock

    def __call__(self) -> str:
        self.calls += 1
        if self.clock is not None:
            self.clock.now += self.cost
        if self.outcomes:
            raise self.outcomes.pop(0)
        return "ok"


def always(exc_factory: Callable[[], LauncherError], n: int = 100) -> list[LauncherError]:
    return [exc_factory() for _ in range(n)]


def test_success_after_transient_failures() -> None:
    clock = ManualClock(now=0.0)
    fn = Script(TransientError("503"), TransientError("timeout"))
    assert call_with_retry(fn, POLICY, clock.clock()) == "ok"
    assert fn.calls == 3
    assert clock.sleeps == [1.0, 2.0]


def test_gives_up_after_attempts() -> None:
    clock = ManualClock(now=0.0)
    fn = Script(*always(lambda: TransientError("connection refused")))
    with pytest.raises(UnavailableError) as info:
        call_with_retry(fn, POLICY, clock.clock())
    assert not isinstance(info.value, TransientError)
    assert info.value.exit_code == 69
    assert fn.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert "connection refused" in str(info.value) and "4 attempts" in str(info.value)


def test_respects_deadline() -> None:
    clock = ManualClock(now=0.0)
    policy = RetryConfig(attempts=100, initial_delay=1.0, max_delay=1.0, jitter="none", deadline=25.0)
    fn = Script(*always(lambda: TransientError("slow")), cost=10.0, clock=clock)
    with pytest.raises(UnavailableError):
        call_with_retry(fn, policy, clock.clock())
    # t=10 fail, sleep 1; t=21 fail, 21+1 < 25, sleep; t=32 fail: past the deadline.
    assert fn.calls == 3
    assert clock.now <= 25.0 + 10.0


def test_honours_retry_after() -> None:
    clock = ManualClock(now=0.0)
    fn = Script(TransientError("429", retry_after=7.0), TransientError("429", retry_after=0.5))
    assert call_with_retry(fn, POLICY, clock.clock()) == "ok"
    assert clock.sleeps == [7.0, 2.0]


@pytest.mark.parametrize(
    "error",
    [NotFoundError("404"), AuthError("403"), ManifestError("400"), UnavailableError("final"), LauncherError("bug")],
    ids=lambda e: type(e).__name__,
)
def test_never_retries_final_errors(error: LauncherError) -> None:
    clock = ManualClock(now=0.0)
    fn = Script(error)
    with pytest.raises(type(error)) as info:
        call_with_retry(fn, POLICY, clock.clock())
    assert info.value is error
    assert fn.calls == 1
    assert clock.sleeps == []


def test_single_attempt_policy() -> None:
    clock = ManualClock(now=0.0)
    fn = Script(TransientError("503"))
    with pytest.raises(UnavailableError, match="after 1 attempt in "):
        call_with_retry(fn, RetryConfig(attempts=1), clock.clock())
    assert fn.calls == 1


# -- failure feedback and bounds (docs/operations/failures.md) -------------------------------------------------------


def test_backoff_never_overflows() -> None:
    """multiplier**(attempt-1) overflows a float near attempt 1025: a "retry for a day" policy must not crash."""
    policy = RetryConfig(attempts=100_000, initial_delay=0.001, max_delay=0.001, multiplier=2.0, jitter="none")
    assert backoff(policy, 2000, 0.5) == 0.001
    big = RetryConfig(attempts=100_000, initial_delay=1.0, max_delay=30.0, multiplier=10.0, jitter="none")
    assert backoff(big, 100_000, 0.5) == 30.0


def test_each_retried_attempt_logs_one_warning_with_the_next_attempt(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(now=0.0)
    fn = Script(TransientError("vault://a: Vault at http://v:1: connection refused"),
                TransientError("vault://a: Vault at http://v:1: HTTP 503"))
    with caplog.at_level("WARNING", logger="launcher"):
        assert call_with_retry(fn, POLICY, clock.clock()) == "ok"
    assert [r.getMessage() for r in caplog.records] == [
        "vault://a: Vault at http://v:1: connection refused; retry 2/4 in 1.0s",
        "vault://a: Vault at http://v:1: HTTP 503; retry 3/4 in 2.0s",
    ]


def test_the_final_error_keeps_the_cause_of_the_last_real_failure() -> None:
    """The last attempt, cut short by the deadline, only knows time ran out: the error says why it failed before."""
    clock = ManualClock(now=0.0)
    policy = RetryConfig(attempts=10, initial_delay=1.0, max_delay=1.0, jitter="none", deadline=3.5)
    fn = Script(TransientError("x: connection reset"), TransientError("x: connection reset"),
                TransientError("x: no answer within the time left"), cost=1.0, clock=clock)
    with pytest.raises(UnavailableError) as info:
        call_with_retry(fn, policy, clock.clock())
    assert info.value.message.startswith("x: connection reset (gave up after")


def test_a_stop_ends_the_wait_between_attempts() -> None:
    import threading

    stop = threading.Event()
    fn = Script(*always(lambda: TransientError("x: HTTP 503")))
    policy = RetryConfig(attempts=5, initial_delay=30.0, max_delay=30.0, jitter="none", deadline=600.0)
    threading.Timer(0.05, stop.set).start()  # the watcher stopping while a fetch waits to retry
    with pytest.raises(UnavailableError, match="stopped while retrying"):
        call_with_retry(fn, policy, stop=stop)
    assert fn.calls == 1


def test_each_attempt_runs_under_the_remaining_deadline() -> None:
    from launcher import deadline

    seen: list[float | None] = []
    clock = ManualClock(now=0.0)

    def attempt() -> str:
        seen.append(deadline.remaining())
        clock.now += 10.0
        raise TransientError("x: HTTP 503")

    policy = RetryConfig(attempts=10, initial_delay=1.0, max_delay=1.0, jitter="none", deadline=25.0)
    with pytest.raises(UnavailableError):
        call_with_retry(attempt, policy, clock.clock())
    assert [round(s or 0) for s in seen] == [25, 14, 3]  # what is left of the 25 s, attempt by attempt
    assert deadline.remaining() is None
