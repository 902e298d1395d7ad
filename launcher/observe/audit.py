"""The audit trail: one JSON object per line for each audited event (docs/operations/audit.md).

``AuditLog`` is an ``events.EventSink``. Its file is opened once, for append
(``O_APPEND``), created 0600, never through a symbolic link (``O_NOFOLLOW``), and
must be a regular file (``regular_files.open_append``). Every line is one
``write(2)`` of the whole line: launchers appending to one file never interleave
(the kernel appends each write whole on a local filesystem), and a line is in
the file before ``emit`` returns, so before the supervisor or the child can act
on what it records (written, not fsync'ed: it survives the launcher's crash, not
the host's power loss). A line is written whole or not at all: a write cut short
(a full disk) is truncated away. A file that cannot be opened, or is not a
regular file, is ``ManifestError`` (78) at start; a write that fails later is
logged once and never stops anything.

Fields: ``time`` (RFC 3339, UTC), ``event``, ``source``, ``ref``, ``version``,
``bindings``, ``outcome``, ``pid``, ``child_pid``, ``host``, ``user``, plus
``reason`` and ``expires_at`` (null when they do not apply); a certificate's lines
(``cert_issue``, ``cert_renew``, ``cert_revoke``) add ``serial`` and ``not_after``. An ``Event`` holds
no value, token or lease id, so no line can.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from launcher.errors import ManifestError
from launcher.events import AUDITED, Event
from launcher.manifest.regular_files import NotRegularError, open_append

log = logging.getLogger(__name__)

_MODE = 0o600
# JSON strings, ASCII only (\uXXXX escapes): no character of a reference can break a line
# for any reader. The C encoder of one string: a line is put together by hand, because
# json.dumps with separators of its own builds an encoder per call, and lines come from
# the watcher as often as 100 a second (benchmarks/bench_observability.py).
_quote = json.encoder.encode_basestring_ascii
_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text (lines come in bursts)


def rfc3339(timestamp: float) -> str:
    """``2026-01-31T12:00:00.123Z``: UTC, milliseconds."""
    global _second
    whole, millis = divmod(round(timestamp * 1000), 1000)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{millis:03d}Z"


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _user() -> str:
    """The effective user's name (never ``$USER``, which anyone can set), else its uid."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


class AuditLog:
    """Appends audited events (``events.AUDITED``) to ``path`` as JSON lines; thread-safe."""

    def __init__(self, path: str, wall: Callable[[], float] = time.time) -> None:
        """Open ``path`` now: ``ManifestError`` (78) when it cannot be (a missing directory,
        no permission, a directory). An existing file keeps its mode; a new one is 0600."""
        self.path = path
        self._now = wall
        try:
            self._fd: int | None = open_append(path, _MODE)
        except NotRegularError as exc:
            raise ManifestError(f"the audit file {path} {exc}") from None
        except (OSError, ValueError) as exc:
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else "invalid path"
            raise ManifestError(f"cannot open the audit file {path} for appending ({cause.lower()})") from None
        self._who = f'"host":{_quote(socket.gethostname())},"user":{_quote(_user())}'
        self._failed = False
        self._lock = threading.Lock()  # a write and close() never overlap (a closed fd number may be reused)

    def line(self, event: Event) -> bytes:
        """The JSON line for ``event`` (with its newline)."""
        e = event
        expires = "null" if e.expires_at is None else f'"{rfc3339(e.expires_at)}"'
        child = "null" if e.child_pid is None else int(e.child_pid)
        # A certificate's lines also say it in its own words: the serial and not_after of what was issued.
        cert = f',"serial":{_text(e.version)},"not_after":{expires}' if e.kind.startswith("cert_") else ""
        return (f'{{"time":"{rfc3339(self._now())}","event":{_quote(e.kind)},"source":{_text(e.source)},"ref":{_text(e.ref)},'
                f'"version":{_text(e.version)},"bindings":[{",".join(map(_quote, e.bindings))}],"outcome":{_quote(e.outcome)},'
                f'"pid":{os.getpid()},"child_pid":{child},{self._who},"reason":{_text(e.reason)},"expires_at":{expires}{cert}}}\n'
                ).encode("ascii")

    def emit(self, event: Event) -> None:
        if event.kind not in AUDITED:
            return
        data = self.line(event)
        with self._lock:
            if self._fd is None:
                return
            try:
                # One write per line, never retried in pieces: a second write could land
                # after another launcher's line and split this one.
                written = os.write(self._fd, data)
                if written == len(data):
                    return
                _roll_back(self._fd, written)
                exc = OSError(0, f"short write ({written} of {len(data)} bytes), rolled back")
            except OSError as error:
                exc = error
            first, self._failed = not self._failed, True
        if first:
            # Once: a full disk must not flood the log, nor stop the child.
            log.warning("audit: writing to %s failed (%s); the launcher goes on, later failures are not logged",
                        self.path, (exc.strerror or "write error").lower())

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _roll_back(fd: int, written: int) -> None:
    """Take back the ``written`` bytes of a line cut short (a full disk, a file size limit),
    so that the next line does not start in the middle of this one.

    With ``O_APPEND`` our bytes end at the descriptor's offset. The file is cut
    back only while nothing follows them: a line another process appended after
    ours is never cut (the torn piece then stays, the one case left).
    """
    try:
        end = os.lseek(fd, 0, os.SEEK_CUR)
        if os.fstat(fd).st_size == end:
            os.ftruncate(fd, end - written)
    except OSError:
        pass  # nothing more can be done; the failure is reported by the caller
