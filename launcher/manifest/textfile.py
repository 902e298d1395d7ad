"""Reading the manifest's own files (the manifest, env files) with a bound on their size."""

from __future__ import annotations

MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def read_capped(path: str, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path`` (so a caller can tell "too large"
    without reading ``/dev/zero`` to the end). Raises ``OSError`` and, for a
    path holding a NUL byte, ``ValueError``."""
    with open(path, "rb") as fh:
        return fh.read(limit + 1)
