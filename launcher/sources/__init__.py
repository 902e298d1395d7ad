"""Secret backends: one module each, behind one Protocol, found through a registry.

A source turns a (path, version) into a ``Secret``. Each backend module
declares, in one ``BACKEND`` value, everything the core needs once a manifest
uses it: its ``type`` name and config dataclass (whose fields the manifest
reader reads), its reference rules, the third-party loggers to cap, and what it
needs installed. Its registry line holds the two facts every run needs without
importing it: whether ``NAME://`` works without a declaration, and its default
``scrub`` names.
What a source can do beyond ``fetch`` is told by the capability protocols
below, checked with ``isinstance``. The core asks the registry and knows no
backend by name; a backend imports its SDK only when a source is opened, so
parsing a manifest never pays for one. See docs/architecture.md, "Adding a backend".
"""

from __future__ import annotations

import builtins as _builtins
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from launcher.errors import ManifestError
from launcher.events import NOTHING, EventSink

if TYPE_CHECKING:
    from launcher.config import Manifest, SourceConfig
    from launcher.refs import Reference

class Entry:
    """A registry line: the backend's module, and what every run must know without importing it."""

    __slots__ = ("builtin", "module", "scrub")

    def __init__(self, module: str, *, builtin: bool = False, scrub: tuple[str, ...] = ()) -> None:
        self.module = module  # declares ``BACKEND``; imported only when a manifest uses the type
        self.builtin = builtin  # `TYPE://...` works without a declaration, configured from the environment
        self.scrub = scrub  # the backend's own credentials: never passed to the child

    def __repr__(self) -> str:
        return f"Entry({self.module!r}, builtin={self.builtin}, scrub={self.scrub!r})"


# type -> its entry. One line per backend. A plain class rather than a dataclass, and
# facts rather than an import: a run that reads only files never imports the others.
# Built-ins: `vault://` from the VAULT_* (or BAO_*) variables as the CLI reads them,
# `azure://VAULT-NAME/SECRET` for https://VAULT-NAME.vault.azure.net, `aws://NAME` from the
# AWS_* variables. AWS variables are not scrubbed: the application usually runs as the
# same identity (list them in `scrub` if not).
REGISTRY = {
    "file": Entry("launcher.sources.file"),
    "vault": Entry("launcher.sources.vault", builtin=True, scrub=("VAULT_TOKEN", "BAO_TOKEN", "VAULT_SECRET_ID")),
    "azure": Entry("launcher.sources.azure", builtin=True, scrub=("AZURE_CLIENT_SECRET",)),
    "aws": Entry("launcher.sources.aws", builtin=True),
    "gcp": Entry("launcher.sources.gcp", builtin=True, scrub=("GOOGLE_APPLICATION_CREDENTIALS",)),
}


@dataclass(frozen=True)
class Lease:
    """A dynamic secret's lease (Vault); durations in seconds."""

    lease_id: str = field(repr=False)
    duration: float
    renewable: bool


@dataclass(frozen=True)
class Secret:
    """What one read returned: a scalar ``value`` or a mapping of ``fields``.

    The repr shows field names and the version, never a value.
    """

    value: str | None = None
    fields: Mapping[str, str] | None = None
    version: str | None = None
    lease: Lease | None = None

    def __repr__(self) -> str:
        shape = f"fields={sorted(self.fields)}" if self.fields is not None else "value=<hidden>"
        return f"Secret({shape}, version={self.version!r}, lease={self.lease!r})"


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
    ``ManifestError`` (78); it never logs or raises a value.

    A source may set ``local = True`` when a fetch does no network I/O (a file): the
    resolver then reads it on the calling thread instead of a helper's."""

    name: str

    def fetch(self, path: str, version: str | None) -> Secret: ...

    def close(self) -> None: ...


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


@dataclass(frozen=True)
class Backend:
    """What a backend module declares about itself (its ``BACKEND``)."""

    type: str  # `type:` in the manifest, and the built-in source's name when its entry says ``builtin``
    config: _builtins.type[SourceConfig]  # a frozen dataclass whose fields the manifest reader reads
    open: Callable[[Any, EventSink], Source]  # builds a source from its config (and imports the SDK)
    reference_problem: Callable[[Any, Reference], str | None] = _no_problem  # checked before any request
    loggers: tuple[str, ...] = ()  # third-party loggers capped at WARNING (they may log values)
    requires: tuple[str, ...] = ()  # importable modules; without them `type:` is 78 naming `extra`
    extra: str | None = None  # the pip extra that installs ``requires``


@cache
def backend(kind: str) -> Backend:
    """The backend of ``type: kind`` (its module imported now); ``KeyError`` when unknown."""
    # __import__ (what an import statement runs) rather than importlib.import_module: the
    # same module, and `python -X importtime` shows it, which the import-cost tests read.
    declared: Backend = __import__(REGISTRY[kind].module, fromlist=["BACKEND"]).BACKEND
    for name in declared.loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    return declared


def types() -> tuple[str, ...]:
    """Every known ``type``, sorted (for messages)."""
    return tuple(sorted(REGISTRY))


def builtins() -> frozenset[str]:
    """The source names that work without a declaration."""
    return frozenset(kind for kind, entry in REGISTRY.items() if entry.builtin)


def default_scrub() -> tuple[str, ...]:
    """Every backend's own credentials: never passed to the child unless in ``passthrough``."""
    names: list[str] = []
    for entry in REGISTRY.values():
        names += [n for n in entry.scrub if n not in names]
    return tuple(names)


def missing_requirement(kind: str) -> str | None:
    """Why a source of ``type: kind`` cannot be opened here (its extra is not installed), or None."""
    import importlib.util

    declared = backend(kind)
    for module in declared.requires:
        if importlib.util.find_spec(module) is None:
            extra = f" (pip install 'secret-launcher[{declared.extra}]')" if declared.extra else ""
            return f"type {kind} needs {module}, which is not installed{extra}"
    return None


def source_config(manifest: Manifest, name: str) -> SourceConfig:
    """The declared source called ``name``, or the built-in of that name; ``KeyError`` otherwise."""
    if name in manifest.sources:
        return manifest.sources[name]
    if name in REGISTRY and REGISTRY[name].builtin:
        return backend(name).config(name=name)
    raise KeyError(name)


def reference_problem(manifest: Manifest, ref: Reference) -> str | None:
    """What is wrong with ``ref`` for its source's type, found without any request."""
    config = source_config(manifest, ref.source)
    return backend(config.type).reference_problem(config, ref)


def open_source(config: SourceConfig, events: EventSink = NOTHING) -> Source:
    """Build the backend for ``config``, importing its SDK only now; it tells ``events``
    what it does on its own (logins, lease revocations).

    Raises ``ManifestError`` (78) when the backend's extra is not installed.
    """
    problem = missing_requirement(config.type)
    if problem is not None:
        raise ManifestError(f"source {config.name!r}: {problem}")
    return backend(config.type).open(config, events)


def to_text(value: Any) -> str:
    """A field value as environment text: strings as they are, others as compact JSON."""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
