"""Reading many secrets at once, in rounds: the resolver's fetch of a whole manifest.

Each round makes one attempt at every key still to read: a batch first where a
source reads many at once (round one only), then the rest concurrently, local
sources on the calling thread. What fails in a way worth retrying
(``TransientError``) is tried again in the next round, after the policy's
backoff (``retry.next_delay``, Retry-After honoured); everything else is final
at once. Why rounds rather than a retry loop per secret:

- ``retry.deadline`` bounds the whole fetch, whatever the number of secrets
  (the batch included): every attempt runs under a bound cut to what is left,
  so a stalled or dripping server ends the fetch at the deadline plus the
  attempt's teardown, not one deadline per secret;
- a failing source says so once per round, not once per secret:
  ``source 'prod' (https://vault:8200): 3 secrets unavailable: connection refused; retry 2/4 in 1.3s``.

The final error of a key that never got an answer names its reference and the
last real cause, with ``(gave up after N attempts in Xs)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from launcher import deadline
from launcher.clock import Clock
from launcher.errors import LauncherError, ManifestError, TransientError, UnavailableError
from launcher.events import Event, EventSink
from launcher.model.config import RetryConfig
from launcher.model.refs import FetchKey
from launcher.resolve.retry import LEAST_ATTEMPT, next_delay
from launcher.sources.base import Batching, Local, Secret, Source, Writing

log = logging.getLogger("launcher.resolve.resolver")

# From this many reads of one source at once, a source that can batch them does
# (Vault: every read on a connection of its own, opened together from one thread).
BATCH_MIN = 8
# The most a batch may take before its leftovers are read one by one (seconds).
BATCH_BOUND = 2.0
_SHOWN_REFS = 1  # a retry line names the reference when one secret of its source failed

Outcome = Secret | LauncherError
Uses = Mapping[FetchKey, tuple[str, ...]]


class Reading:
    """What a round reader needs of the resolver that owns it.

    A plain class, not a dataclass: made once per resolution, and every dataclass costs a
    start-up a fraction of a millisecond to create.
    """

    __slots__ = ("clock", "events", "max_workers", "policy", "source", "started", "stop", "store")

    def __init__(self, *, source: Callable[[str], Source], store: Callable[[FetchKey, Secret, tuple[str, ...]], None],
                 started: Callable[[int], None], events: EventSink, policy: RetryConfig, clock: Clock, stop: threading.Event,
                 max_workers: int) -> None:
        self.source = source  # the open source of a name (opened on first use)
        self.store = store  # cache a secret just read, and tell the events
        self.started = started  # count keys read at a backend (``Client.stats``)
        self.events = events
        self.policy = policy
        self.clock = clock
        self.stop = stop  # set when the launcher is leaving: no wait, no new round
        self.max_workers = max_workers


def read_in_rounds(reading: Reading, keys: list[FetchKey], uses: Uses) -> dict[FetchKey, Outcome]:
    """Every key's outcome (never raised), the whole within ``retry.deadline`` (see the module doc)."""
    policy, clock = reading.policy, reading.clock
    begun = clock.monotonic()
    outcomes: dict[FetchKey, Outcome] = {}
    reading.started(len(keys))
    pending, attempt = keys, 1
    causes: dict[FetchKey, TransientError] = {}  # each key's last failure that said what was wrong
    while pending:
        left = policy.deadline - (clock.monotonic() - begun)
        found = _one_round(reading, pending, uses, left, batch=attempt == 1)
        failed = {k: e for k, e in found.items() if isinstance(e, TransientError)}
        for key, outcome in found.items():
            if key not in failed:
                outcomes[key] = outcome
        if not failed:
            break
        elapsed = clock.monotonic() - begun
        for key, exc in failed.items():
            # An attempt cut short by the deadline says only that time ran out; the one
            # before it said why the server was not answering, which is the news.
            if key not in causes or elapsed < policy.deadline:
                causes[key] = exc
        delay = _next_round(policy, attempt, elapsed, clock.random(), failed)
        if delay is not None and not reading.stop.is_set():
            _tell_retry(failed, attempt + 1, policy.attempts, delay)
            if not clock.pause(delay, reading.stop):
                pending, attempt = list(failed), attempt + 1
                continue
        outcomes.update(_give_up(reading, failed, causes, attempt, clock.monotonic() - begun, uses))
        break
    return outcomes


def _next_round(policy: RetryConfig, attempt: int, elapsed: float, draw: float, failed: Mapping[FetchKey, TransientError]) -> float | None:
    """The wait before the next round (the largest Retry-After counts), None to give up."""
    retry_after = max((e.retry_after for e in failed.values() if e.retry_after is not None), default=None)
    delay = next_delay(policy, attempt, elapsed, draw, retry_after)
    if delay is not None and policy.deadline - (elapsed + delay) < LEAST_ATTEMPT:
        return None  # too little time would be left for an attempt to get an answer
    return delay


def _tell_retry(failed: Mapping[FetchKey, TransientError], nth: int, of: int, delay: float) -> None:
    """One WARNING line per source: what failed, where, why, and when the next round comes."""
    by_source: dict[str, list[FetchKey]] = {}
    for key in failed:
        by_source.setdefault(key.source, []).append(key)
    for name, keys in by_source.items():
        first = failed[keys[0]]
        where = f" ({first.where})" if first.where else ""
        what = f"{keys[0]} unavailable" if len(keys) <= _SHOWN_REFS else f"{len(keys)} secrets unavailable"
        cause = first.cause or first.message
        log.warning("source %r%s: %s: %s; retry %d/%d in %.1fs", name, where, what, cause, nth, of, delay,
                    extra={"fields": {"source": name, "secrets": len(keys), "attempt": nth - 1, "next_attempt_in": round(delay, 3)}})


def _give_up(reading: Reading, failed: Mapping[FetchKey, TransientError], causes: Mapping[FetchKey, TransientError],
             attempts: int, elapsed: float, uses: Uses) -> dict[FetchKey, Outcome]:
    """The final error of each key that never got an answer (69), told to the events."""
    tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
    why = "stopped while retrying" if reading.stop.is_set() else f"gave up after {tries} in {elapsed:.1f}s"
    out: dict[FetchKey, Outcome] = {}
    for key, exc in failed.items():
        final = UnavailableError(f"{causes.get(key, exc).message} ({why})")
        final.__cause__ = exc
        reading.events.emit(Event("fetch", source=key.source, ref=str(key), bindings=uses.get(key, ()), outcome=final.status))
        out[key] = final
    return out


def _one_round(reading: Reading, keys: list[FetchKey], uses: Uses, left: float, batch: bool) -> dict[FetchKey, Outcome]:
    """One attempt at each key: a batch first where it may, the rest concurrently."""
    outcomes: dict[FetchKey, Outcome] = {}
    until = reading.clock.monotonic() + left  # the batch's time comes out of the round's
    local, remote = _by_locality(reading, keys)
    if batch and len(remote) >= BATCH_MIN:
        outcomes.update(_read_batches(reading, remote, uses, min(BATCH_BOUND, reading.policy.deadline / 10, left)))
        remote = [key for key in remote if key not in outcomes]
    pending = iter(remote)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                key = next(pending, None)
            if key is None:
                return
            outcomes[key] = _attempt(reading, key, uses, until)

    # Workers (the calling thread among them) take keys from one iterator until it is
    # empty, and the caller joins them once. Why not ThreadPoolExecutor.map: a future per
    # key and a wake-up of the caller per result cost about a third more CPU for 100 keys,
    # which is what a start-up with many secrets waits for on a small machine.
    helpers = [threading.Thread(target=work, name=f"fetch-{i}", daemon=True)
               for i in range(min(reading.max_workers, len(remote)) - 1)]
    for thread in helpers:
        thread.start()
    for key in local:
        outcomes[key] = _attempt(reading, key, uses, until)
    work()
    for thread in helpers:
        thread.join()
    return outcomes


def _attempt(reading: Reading, key: FetchKey, uses: Uses, until: float) -> Outcome:
    """One attempt at ``key``, hard-bounded by ``until``; a ``TransientError`` is returned for the next round."""
    bindings = uses.get(key, ())
    try:
        src = reading.source(key.source)
        with deadline.bound(until - reading.clock.monotonic()):
            secret = read_from(src, key)
    except TransientError as exc:
        return exc
    except LauncherError as exc:
        reading.events.emit(Event("fetch", source=key.source, ref=str(key), bindings=bindings, outcome=exc.status))
        return exc
    except Exception as exc:  # a bug in a backend: report it without its text
        log.debug("unexpected error fetching %s", key, exc_info=True)
        return LauncherError(f"{key}: internal error ({exc.__class__.__name__}); rerun with --log-level debug")
    reading.store(key, secret, bindings)
    return secret


def read_from(src: Source, key: FetchKey) -> Secret:
    """One attempt at ``key``: a read, or a write of its request data (``Writing``)."""
    if not key.data:
        return src.fetch(key.path, key.version)
    if not isinstance(src, Writing):  # the manifest refuses such references: kept for sources built by hand
        raise ManifestError(f"{key}: source {key.source!r} takes no request data (?NAME=VALUE)")
    return src.write(key.path, dict(key.data))


def _by_locality(reading: Reading, keys: list[FetchKey]) -> tuple[list[FetchKey], list[FetchKey]]:
    """(local, remote): keys of sources that read without network I/O (``Local``), and the others.

    A local source (a file) is read on the calling thread: a helper would only queue for the GIL.
    """
    local: list[FetchKey] = []
    remote: list[FetchKey] = []
    for key in keys:
        try:
            src: Source | None = reading.source(key.source)
        except LauncherError:
            src = None  # reported for the key by ``_attempt``
        (local if isinstance(src, Local) and src.local else remote).append(key)
    return local, remote


def _read_batches(reading: Reading, keys: list[FetchKey], uses: Uses, within: float) -> dict[FetchKey, Outcome]:
    """Read many keys of one source in one go where the source can (``Batching``).

    What a batch answers is cached and told like any read; what it leaves out is read
    key by key in the same round, with the retry policy and its messages. The batch gets
    a tenth of ``retry.deadline`` (at most ``BATCH_BOUND``), so a server that stalls
    costs a fetch little more than the deadline.
    """
    by_source: dict[str, list[FetchKey]] = {}
    for key in keys:
        if not key.data:  # a write is never batched
            by_source.setdefault(key.source, []).append(key)
    found: dict[FetchKey, Outcome] = {}
    for name, group in by_source.items():
        src = reading.source(name)
        if len(group) < BATCH_MIN or not isinstance(src, Batching):
            continue
        try:
            secrets = src.read_many([(k.path, k.version) for k in group], within)
        except Exception:  # best effort: the keys are read one by one
            log.debug("batch read from %s failed", name, exc_info=True)
            continue
        for key in group:
            if (secret := secrets.get((key.path, key.version))) is not None:
                reading.store(key, secret, uses.get(key, ()))
                found[key] = secret
    return found
