"""What the watcher knows about each secret it tracks, and when that secret is next due.

``Tracked`` is one secret's record; ``lease_due`` when its lease is renewed or re-read;
``next_check`` the same schedule in one word, for ``check``'s NEXT_CHECK column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from launcher.clock import SYSTEM
from launcher.model.config import WatchConfig
from launcher.model.durations import format_duration
from launcher.model.refs import FetchKey
from launcher.sources.base import RENEW_SHARE, Lease, Secret


@dataclass
class Tracked:
    """What the watcher knows about one distinct secret."""

    key: FetchKey
    version: str | None
    read_at: float
    next_check: float
    # Checks fall on phase + k * interval: the phase is drawn once, uniformly over one
    # interval, and kept across rotations. Why not fresh jitter on every check (the old
    # +-10 %): that re-draws a fleet's load every period, and its busiest second ends up
    # 1.65-1.75x the mean; fixed phases keep the spread the fleet had at start (1.35x,
    # benchmarks/bench_fleet.py), and no drift can bunch watchers up again.
    phase: float
    lease: Lease | None = None
    lease_at: float = 0.0  # when the lease was obtained or last renewed
    issued_at: float = 0.0  # when the lease was first obtained
    full_duration: float = 0.0
    missing: bool = False  # an optional secret that did not exist at the last read
    # An issued secret (a certificate) cannot be renewed, only issued again: it is due at
    # ``renew_at`` (2/3 of its lifetime, or the next attempt after a failure), neither by
    # version nor by ``cache.ttl``, and it ends at ``expires`` (both monotonic).
    expires: float | None = None
    renew_at: float = 0.0


def lease_due(t: Tracked) -> tuple[float, str]:
    """When ``t``'s lease is next due, and what then: ``renew`` it, or ``reread`` (it ends for good)."""
    assert t.lease is not None
    lease = t.lease
    if lease.renewable and lease.duration >= 0.99 * t.full_duration:
        return t.lease_at + lease.duration * 2 / 3, "renew"
    # Not renewable, or capped by its max TTL: the lease ends for good at lease_at +
    # duration, so fetch new credentials once 90 % of its whole life has passed.
    return t.issued_at + 0.9 * (t.lease_at + lease.duration - t.issued_at), "reread"


def next_check(keys: tuple[FetchKey, ...], secrets: Mapping[FetchKey, Secret], watch: WatchConfig,
               wall: float | None = None) -> str:
    """When a watching launcher would next look at these secrets, for ``check`` (``wall``: the
    Unix time now, the system's by default).

    One word, so the table stays easy to split: ``~60s`` (the interval),
    ``renew~20s`` (2/3 of a lease, or of what is left of a certificate's life),
    ``never`` (pinned) or ``-``.
    """
    if not keys:
        return "-"
    if all(k.version is not None for k in keys):
        return "never"
    expiries = [s.expires_at for k in keys if (s := secrets.get(k)) is not None and s.expires_at is not None]
    if expiries:
        return f"renew~{format_duration(round(max(0.0, min(expiries) - (SYSTEM.wall() if wall is None else wall)) * RENEW_SHARE))}"
    if all(k.data for k in keys):
        return "-"  # decrypted: there is no version to check (read again after cache.ttl)
    leases = [s.lease for k in keys if (s := secrets.get(k)) is not None and s.lease is not None]
    if leases:
        return f"renew~{format_duration(min(lease.duration for lease in leases) * 2 / 3)}"
    return f"~{format_duration(watch.interval)}"
