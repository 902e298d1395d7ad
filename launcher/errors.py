"""The one exception tree of the launcher.

Every error the launcher reports on purpose is a ``LauncherError``; each class
carries the exit code of DESIGN section 5, and ``cli.py`` is the only place
that turns one into an exit::

    LauncherError (70, internal)
    +-- UsageError (2)
    +-- ManifestError (78)            invalid manifest or reference; names file:line
    +-- AuthError (77)                authentication or permission denied
    +-- UnavailableError (69)         a source stayed unavailable after retries
    |   +-- TransientError (69)       one failed attempt that is worth retrying
    +-- NotFoundError (66)            a required secret or key does not exist
    +-- WouldOverwriteError (73)         ``init`` would overwrite a file
    +-- RotationExitError (75)             exited on rotation (``on_change: exit``)
    +-- CommandError (126 / 127)      the command cannot be run

Foreign exceptions (hvac, requests, azure-core, OSError) are mapped to this
tree once, at the boundary where they are raised, with ``raise X from exc``.
No message may contain a secret value: messages name references, never values.
"""

from __future__ import annotations


class LauncherError(Exception):
    """Base class: an error the launcher reports with a one-line message."""

    exit_code = 70

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(LauncherError):
    """The command line is wrong."""

    exit_code = 2


class ManifestError(LauncherError):
    """The manifest or a reference is invalid.

    ``where`` is ``file:line`` (or ``<environment>`` for inline references) and
    ``field`` the dotted field name, so the message reads
    ``launcher.yaml:12: env.DB_PASSWORD: unknown source 'prd'``.
    """

    exit_code = 78

    def __init__(self, message: str, where: str | None = None, field: str | None = None) -> None:
        parts = [p for p in (where, field) if p]
        super().__init__(": ".join([*parts, message]))
        self.where = where
        self.field = field
        self.detail = message


class AuthError(LauncherError):
    """Authentication failed or permission was denied; never retried."""

    exit_code = 77


class UnavailableError(LauncherError):
    """A source could not be reached (after retries, when raised to the user)."""

    exit_code = 69


class TransientError(UnavailableError):
    """One attempt failed in a way worth retrying (connection, timeout, 429, 5xx).

    ``retry_after`` is the server's Retry-After in seconds, when it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFoundError(LauncherError):
    """A required secret, version or key does not exist."""

    exit_code = 66


class WouldOverwriteError(LauncherError):
    """``init`` refuses to overwrite an existing file."""

    exit_code = 73


class RotationExitError(LauncherError):
    """The child was stopped because a secret rotated and ``on_change`` is exit."""

    exit_code = 75


class CommandError(LauncherError):
    """The command could not be started: 127 when not found, 126 otherwise."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Several failures at once: the most fundamental wins (DESIGN 7).
_PRIORITY = {78: 0, 77: 1, 69: 2, 66: 3}


def most_fundamental(errors: list[LauncherError]) -> LauncherError:
    """Return the error that should decide the exit code: 78 > 77 > 69 > 66."""
    return min(errors, key=lambda e: _PRIORITY.get(e.exit_code, -1))
