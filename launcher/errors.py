"""The one exception tree of the launcher.

Every error the launcher reports on purpose is a ``LauncherError``; each class
carries its exit code (docs/reference/exit-codes.md), the status word ``check`` shows,
and its rank among errors that happen together. ``cli.py`` is the only place
that turns one into an exit (docs/architecture.md, "Errors")::

    LauncherError (70, internal)
    +-- UsageError (2)
    +-- ManifestError (78, invalid)      invalid manifest or reference; names file:line
    +-- AuthError (77, denied)           authentication or permission denied
    +-- UnavailableError (69, unavailable)  a source stayed unavailable after retries
    |   +-- TransientError (69)          one failed attempt that is worth retrying
    +-- NotFoundError (66, missing)      a required secret or key does not exist
    +-- WouldOverwriteError (73)         ``init`` would overwrite a file
    +-- RotationExitError (75)           exited on rotation (``on_change: exit``)
    +-- CommandError (126 / 127)         the command cannot be run
    +-- CompoundError (the most fundamental one's)  several at once, each reported

Foreign exceptions (hvac, requests, azure-core, OSError) are mapped to this
tree once, at the boundary where they are raised, with ``raise X from exc``.
No message may contain a secret value: messages name references, never values.
Messages are one line: ``one_line`` escapes control characters of user input
(it lives here, with no imports of ours, and ``launcher.logs`` re-exports it).
A ``ManifestError`` may carry further problems of the same manifest
(``more``); ``errors_of`` lists them all.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Literal, overload

# Everything that could end or visually rewrite a line: C0 and C1 controls, DEL,
# the characters ``str.splitlines`` also breaks on (U+2028, U+2029), and the
# bidirectional overrides that reorder what a terminal shows.
_UNPRINTABLE = r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"  # compiled (and cached) by re on first use
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``, ``\\x1b``, ``\\u2028``).

    Used wherever user input (a manifest key, a file name) may reach a message,
    so that no input can end a log line early or forge one. Backslashes are
    left alone: the result is for people to read, not to be parsed back.
    """
    if re.search(_UNPRINTABLE, text) is None:
        return text
    return re.sub(_UNPRINTABLE, _escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


Failure = Literal["missing", "denied", "unavailable", "invalid"]
"""The STATUS word of a binding that failed (``check``; an audit line's ``outcome``)."""

Status = Literal["ok", "default", "optional", "missing", "denied", "unavailable", "invalid"]
"""Every STATUS word ``check`` shows: ``ok``, what was done about a missing secret, or a ``Failure``."""


class LauncherError(Exception):
    """Base class: an error the launcher reports with a one-line message.

    ``exit_code`` is what the launcher exits with; ``status`` the word ``check``
    shows for a binding that failed with it; ``rank`` orders errors when several
    happen at once (lowest wins: the most fundamental, 78 > 77 > 69 > 66).
    """

    exit_code = 70
    status: Failure = "invalid"
    rank = -1  # a bug outranks everything

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def with_context(self, context: str) -> LauncherError:
        """The same error with ``context`` (where, which variable) in front of its message.

        A ``ManifestError`` that already names its file:line is returned as it is.
        The copy keeps the class, the exit code and the attributes, and has this
        error as its cause.
        """
        if isinstance(self, ManifestError) and self.where:
            return self
        clone = copy.copy(self)
        clone.message = f"{context}: {self.message}"
        clone.args = (clone.message,)
        clone.__cause__ = self
        return clone


class UsageError(LauncherError):
    """The command line is wrong."""

    exit_code = 2


class ManifestError(LauncherError):
    """The manifest or a reference is invalid.

    ``where`` is ``file:line`` (or ``<environment>`` for inline references) and
    ``field`` the dotted field name, so the message reads
    ``launcher.yaml:12: env.DB_PASSWORD: unknown source 'prd'``. The message is
    always one line: control characters in any part (a key holding a newline)
    are escaped with ``one_line``.

    ``more`` holds further, independent problems found in the same manifest
    (file order, at most 20 in all, the last possibly a note "... and N more
    problems"); ``str()`` is this first problem alone. ``errors_of`` lists all.
    """

    exit_code = 78
    status: Failure = "invalid"
    rank = 0

    def __init__(
        self, message: str, where: str | None = None, field: str | None = None, *, more: Sequence[ManifestError] = ()
    ) -> None:
        parts = [p for p in (where, field) if p]
        super().__init__(one_line(": ".join([*parts, message])))
        self.where = where
        self.field = field
        self.detail = one_line(message)
        self.more: tuple[ManifestError, ...] = tuple(more)


class AuthError(LauncherError):
    """Authentication failed or permission was denied; never retried."""

    exit_code = 77
    status: Failure = "denied"
    rank = 1


class UnavailableError(LauncherError):
    """A source could not be reached (after retries, when raised to the user)."""

    exit_code = 69
    status: Failure = "unavailable"
    rank = 2


class TransientError(UnavailableError):
    """One attempt failed in a way worth retrying (connection, timeout, 429, 5xx).

    ``retry_after`` is the server's Retry-After in seconds, when it sent one; ``cause``
    the failure in plain words (``connection refused``, ``HTTP 503``) and ``where`` the
    server (an address, a vault URL, a region), when the backend knows them apart from
    the message: a resolution that retries many secrets says them once per source.
    """

    def __init__(self, message: str, retry_after: float | None = None, *, cause: str | None = None,
                 where: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.cause = cause
        self.where = where


class NotFoundError(LauncherError):
    """A required secret, version or key does not exist."""

    exit_code = 66
    status: Failure = "missing"
    rank = 3


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


@overload
def errors_of(exc: ManifestError) -> list[ManifestError]: ...


@overload
def errors_of(exc: LauncherError) -> list[LauncherError]: ...


def errors_of(exc: LauncherError) -> list[LauncherError] | list[ManifestError]:
    """Every problem ``exc`` stands for, first one first: ``[exc, *exc.more]``
    for a ``ManifestError`` (each a one-line message to print on its own line),
    ``[exc]`` for any other error."""
    if isinstance(exc, ManifestError):
        return [exc, *exc.more]
    if isinstance(exc, CompoundError):
        return [e for err in exc.errors for e in errors_of(err)]
    return [exc]


def most_fundamental(errors: Sequence[LauncherError]) -> LauncherError:
    """The error that decides the exit code when several happen at once: 78 > 77 > 69 > 66
    (by each class's ``rank``; the first of equals)."""
    return min(errors, key=lambda e: e.rank)


def status_of(error: LauncherError) -> Failure:
    """The word ``check`` shows for a binding that failed with ``error``."""
    return error.status


class CompoundError(LauncherError):
    """Several failures at once (each binding that failed), reported together.

    ``errors`` are in manifest order, each printed on its own line; the exit
    code is the most fundamental one's (78 > 77 > 69 > 66), and so is ``str()``.
    """

    def __init__(self, errors: Sequence[LauncherError]) -> None:
        final = most_fundamental(list(errors))
        super().__init__(final.message)
        self.errors = tuple(errors)
        self.exit_code = final.exit_code
        self.status = final.status
        self.rank = final.rank
