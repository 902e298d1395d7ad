"""What a source is: what a read returns, the ``Source`` protocol, its capabilities, a backend's declaration.

A source turns a (path, version) into a ``Secret``. What it can do beyond
``fetch`` is told by the capability protocols below, checked with ``isinstance``
(and by mypy). Each backend module declares itself in one ``Backend`` value:
its ``type`` name and config dataclass (whose fields the manifest reader
reads), its reference rules, the third-party loggers to cap, and what it needs
installed. See docs/architecture.md, "Adding a backend".
"""

from __future__ import annotations

import builtins as _builtins
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from typing import Any, Protocol, runtime_checkable

from launcher.events import EventSink
from launcher.model.config import SourceConfig
from launcher.model.refs import Reference
from launcher.record import record


@record
class Lease:
    """A dynamic secret's lease (Vault); durations in seconds."""

    lease_id: str = field(repr=False)
    duration: float
    renewable: bool


@record
class Secret:
    """What one read returned: a scalar ``value`` or a mapping of ``fields``.

    ``expires_at`` (Unix time) is when an issued secret stops being valid (a certificate's
    not_after): it cannot be renewed, only issued again, which the watcher does at 2/3 of
    the lifetime left when it was read. A lease, by contrast, is renewed in place.
    The repr shows field names and the version, never a value.
    """

    value: str | None = None
    fields: Mapping[str, str] | None = None
    version: str | None = None
    lease: Lease | None = None
    expires_at: float | None = None
    # The source that answered in place of the one the reference names (its ``fallback:``, set by
    # ``launcher.resolve.failover``); None when the named source answered itself.
    answered_by: str | None = None

    def __repr__(self) -> str:
        shape = f"fields={sorted(self.fields)}" if self.fields is not None else "value=<hidden>"
        expiry = f", expires_at={self.expires_at!r}" if self.expires_at is not None else ""
        by = f", answered_by={self.answered_by!r}" if self.answered_by else ""
        return f"Secret({shape}, version={self.version!r}, lease={self.lease!r}{expiry}{by})"


RENEW_SHARE = 2 / 3
"""An issued secret (or a lease) is replaced once this share of its lifetime has passed."""


def renew_after(secret: Secret, now: float) -> float | None:
    """Seconds from ``now`` (Unix time) until an issued ``secret`` is due to be issued again; None without an expiry."""
    if secret.expires_at is None:
        return None
    return max(0.0, secret.expires_at - now) * RENEW_SHARE


class ContentVersions:
    """Versions for content that has none of its own (a file, Vault KV v1): a counter per
    key that moves each time the content differs from the last read, "1" first.

    Not a hash of the content: `check` prints versions and the audit trail records them,
    and a short hash of a weak secret can be reversed by guessing. What is kept to compare
    is Python's keyed ``hash`` of the content, in memory only. Shared by every source of a
    kind in the process, so two reads of the same unchanged content agree.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, ...], tuple[int, int]] = {}  # key -> (hash of content, counter)
        self._lock = threading.Lock()

    def version(self, key: tuple[str, ...], content: str) -> str:
        fingerprint = hash(content)
        with self._lock:
            last_hash, counter = self._seen.get(key, (None, 0))
            if last_hash != fingerprint:
                counter += 1
                self._seen[key] = (fingerprint, counter)
        return str(counter)


@runtime_checkable
class Source(Protocol):
    """A backend. ``fetch`` raises ``NotFoundError`` (66), ``AuthError`` (77),
    ``TransientError`` (retryable, 69), ``UnavailableError`` (69) or
    ``ManifestError`` (78); it never logs or raises a value."""

    name: str

    def fetch(self, path: str, version: str | None) -> Secret: ...

    def close(self) -> None: ...


@runtime_checkable
class Local(Protocol):
    """A source that may read without network I/O (a file): when ``local`` is true, the resolver
    reads it on the calling thread instead of a helper's (a helper would only queue for the GIL)."""

    local: bool


@runtime_checkable
class Versioned(Protocol):
    """A source that can tell the current version of a path cheaply (for watching)."""

    def current_version(self, path: str) -> str | None:
        """The version a fetch of ``path`` would return now; None when it cannot tell."""


@runtime_checkable
class Leasing(Protocol):
    """A source whose secrets may carry leases (Vault dynamic secrets)."""

    def renew_lease(self, lease: Lease) -> Lease | None:
        """Extend ``lease``; None when it cannot be renewed any more."""


@runtime_checkable
class TokenHolding(Protocol):
    """A source with a token of its own to keep alive (Vault)."""

    def maintain_token(self) -> None:
        """Renew or re-obtain the source's own token when due; cheap when nothing is due."""

    def token_ttl(self) -> float | None:
        """Seconds the token has left; None when it never expires or cannot be known."""


@runtime_checkable
class Writing(Protocol):
    """A source where a reference may carry request data (``?NAME=VALUE``): a read that is a write.

    Vault: a pki mount's ``issue/ROLE`` (a certificate, with an expiry) and a transit
    mount's ``decrypt/KEY``. Raises what ``fetch`` raises.
    """

    def write(self, path: str, data: Mapping[str, str]) -> Secret:
        """The secret answered to ``data`` written to ``path``."""


@runtime_checkable
class Batching(Protocol):
    """A source that can read many secrets in one go (Vault: pipelined KV v2 reads).

    Best effort, for a start-up with many secrets: each secret it returns is what
    ``fetch`` would have returned; what it leaves out (an error, another engine, a
    connection that failed) is read again by ``fetch``, with its retries and messages.
    """

    def read_many(self, items: Sequence[tuple[str, str | None]], within: float) -> dict[tuple[str, str | None], Secret]:
        """Secrets for some of ``items`` (path, version), taking at most ``within`` seconds."""


def _no_problem(config: Any, ref: Reference) -> str | None:
    return None


@record
class Backend:
    """What a backend module declares about itself (its ``BACKEND``)."""

    type: str  # `type:` in the manifest, and the built-in source's name when its entry says ``builtin``
    config: _builtins.type[SourceConfig]  # a frozen dataclass whose fields the manifest reader reads
    open: Callable[[Any, EventSink], Source]  # builds a source from its config (and imports the SDK)
    reference_problem: Callable[[Any, Reference], str | None] = _no_problem  # checked before any request
    loggers: tuple[str, ...] = ()  # third-party loggers capped at WARNING (they may log values)
    requires: tuple[str, ...] = ()  # importable modules; without them `type:` is 78 naming `extra`
    extra: str | None = None  # the pip extra that installs ``requires``
    starter: str = ""  # example settings (YAML lines, `type:` aside) for the source `launcher init` shows
    request_data: bool = False  # references may carry request data (its sources are ``Writing``)


def to_text(value: Any) -> str:
    """A field value as environment text: strings as they are, others as compact JSON."""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
