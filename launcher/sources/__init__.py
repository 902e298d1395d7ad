"""Secret backends behind one Protocol.

A source turns a (path, version) into a ``Secret``. Backends live in their own
modules and are imported only when a manifest uses them, so a file-only run
never pays for hvac or the Azure SDK. Each backend maps its library's
exceptions to ``launcher.errors`` at this boundary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from launcher.config import FileSourceConfig, SourceConfig, VaultSourceConfig


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


class Source(Protocol):
    """A backend. ``fetch`` raises ``NotFoundError`` (66), ``AuthError`` (77),
    ``TransientError`` (retryable, 69), ``UnavailableError`` (69) or
    ``ManifestError`` (78); it never logs or raises a value."""

    name: str

    def fetch(self, path: str, version: str | None) -> Secret: ...

    def close(self) -> None: ...


class Versioned(Protocol):
    """A source that can tell the current version of a path cheaply (for watching)."""

    def current_version(self, path: str) -> str | None:
        """The version a fetch of ``path`` would return now; None when it cannot tell."""


class Renewing(Protocol):
    """A source with leases (Vault dynamic secrets) and a token of its own."""

    def renew_lease(self, lease: Lease) -> Lease | None:
        """Extend ``lease``; None when it cannot be renewed any more."""

    def revoke_lease(self, lease_id: str) -> None: ...

    def maintain_token(self) -> None:
        """Renew or re-obtain the source's own token when due; cheap when nothing is due."""


def to_text(value: Any) -> str:
    """A field value as environment text: strings as they are, others as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=False)


def open_source(config: SourceConfig) -> Source:
    """Build the backend for ``config``, importing its module only now."""
    if isinstance(config, FileSourceConfig):
        from launcher.sources.file import FileSource

        return FileSource(config)
    if isinstance(config, VaultSourceConfig):
        from launcher.sources.vault import VaultSource

        return VaultSource(config)
    from launcher.sources.azure import AzureSource

    return AzureSource(config)
